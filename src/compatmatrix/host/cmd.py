"""The one place that runs a subprocess.

Every external tool (uv, pytest, nvcc, git, the cell's Python) goes through :func:`run`: it
writes the command line to the stage's log, appends the output there, enforces a timeout by
killing the whole process group (a hung build or test leaves nothing behind), and returns a
value rather than raising.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["DRAIN_SECONDS", "CommandResult", "error_lines", "run", "stop_all"]

# Children still running, so that an interrupt can end every process group at once and no
# new one starts afterwards. This is the only process-wide state: what it tracks (live OS
# processes) is itself process-wide.
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()
_STOPPED = threading.Event()


def stop_all() -> None:
    """Kill every running child's process group and refuse to start new ones."""
    _STOPPED.set()
    with _LIVE_LOCK:
        for proc in list(_LIVE):
            _kill_group(proc)


def _register(proc: subprocess.Popen[bytes], live: bool) -> None:
    with _LIVE_LOCK:
        (_LIVE.add if live else _LIVE.discard)(proc)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    output: str
    duration: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def command_line(self) -> str:
        return shlex.join(self.argv)


# After the process ends (or is killed), how long its output pipe may stay open: a
# background process it started (a daemon, a `setsid cmd &`) can hold the pipe for ever,
# and waiting for that EOF would hang the run.
DRAIN_SECONDS = 5.0
# Output kept per command: the head and the tail, the middle left out beyond this.
MAX_OUTPUT = 64 * 1024 * 1024
_POLL_SECONDS = 0.2  # how often a silent command is checked for having ended


def run(argv: Sequence[str], *, log: Path | None = None, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, timeout: float | None,
        input_text: str | None = None) -> CommandResult:
    """Run ``argv``; output (stdout and stderr together) goes to the result and to ``log``.

    Never hangs: after ``timeout`` seconds the process group is killed, and once the process
    has ended (or was killed) its output is read for at most DRAIN_SECONDS more, then the
    pipe is closed, whatever still holds it. Every caller passes a timeout (None only where
    the command is known to end by itself).
    """
    argv = tuple(str(a) for a in argv)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as handle:
            handle.write(f"$ {shlex.join(argv)}\n")
    start = time.monotonic()
    if _STOPPED.is_set():
        return CommandResult(argv, -2, "[compatmatrix] not started: the run was interrupted\n",
                             0.0)
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in an argument
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        result = CommandResult(argv, 127, f"cannot run {argv[0]}: {why}\n", 0.0)
        _append(log, result.output)
        return result
    _register(proc, True)
    if _STOPPED.is_set():  # interrupted while it started: stop_all did not see it
        _kill_group(proc)
    try:
        data = input_text.encode("utf-8") if input_text is not None else None
        raw, timed_out, notes = _communicate(proc, data, timeout)
    except BaseException:  # Ctrl-C: never leave the child's process group running
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        _close(proc)
        _register(proc, False)
    output = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    if timed_out:
        output += f"\n[compatmatrix] timed out after {timeout:.0f} s; process group killed\n"
    output += "".join(f"\n[compatmatrix] {note}\n" for note in notes)
    result = CommandResult(argv, proc.returncode, output, time.monotonic() - start, timed_out)
    _append(log, result.output + f"[exit {result.returncode} after {result.duration:.1f} s]\n")
    return result


def _communicate(proc: subprocess.Popen[bytes], data: bytes | None,
                 timeout: float | None) -> tuple[bytes, bool, list[str]]:
    """The output until EOF, the process's end plus DRAIN_SECONDS, or the timeout (then the
    group is killed): (output, timed out, notes). Reads and writes never block."""
    assert proc.stdout is not None
    deadline = None if timeout is None else time.monotonic() + timeout
    drain_until: float | None = None  # set once the process has ended
    timed_out = False
    notes: list[str] = []
    kept = _Kept()
    out_fd = proc.stdout.fileno()
    os.set_blocking(out_fd, False)
    with selectors.DefaultSelector() as selector:
        selector.register(out_fd, selectors.EVENT_READ)
        pending = memoryview(data or b"")
        if proc.stdin is not None:
            if pending:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
            else:
                _close_quietly(proc.stdin)
        while True:
            now = time.monotonic()
            if drain_until is None and proc.poll() is not None:
                drain_until = now + DRAIN_SECONDS
            if drain_until is None and deadline is not None and now >= deadline:
                timed_out = True
                _kill_group(proc)
                proc.wait()
                drain_until = time.monotonic() + DRAIN_SECONDS
            if drain_until is not None and time.monotonic() >= drain_until:
                _kill_group(proc)  # what is left of its group (not a child in a new session)
                notes.append(f"stopped reading output {DRAIN_SECONDS:g} s after the process "
                             "ended: a process it started in the background keeps the "
                             "output open")
                break
            limit = deadline if drain_until is None else drain_until
            wait = _POLL_SECONDS if limit is None else min(_POLL_SECONDS,
                                                           limit - time.monotonic())
            for key, _ in selector.select(max(wait, 0.0)):
                if key.fd == out_fd:
                    chunk = _read(out_fd)
                    if chunk is None:
                        continue
                    if not chunk:  # EOF: everything that holds the pipe has closed it
                        selector.unregister(out_fd)
                    else:
                        kept.add(chunk)
                else:
                    pending = _write(proc, selector, pending)
            if out_fd not in selector.get_map():
                break
        if proc.stdin is not None and not proc.stdin.closed:
            _close_quietly(proc.stdin)
    if drain_until is None:  # EOF came first: the process ends now, or is about to
        try:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            proc.wait(remaining)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            proc.wait()
    if kept.dropped:
        notes.append(f"{kept.dropped:,} bytes of output left out (more than "
                     f"{MAX_OUTPUT // (1024 * 1024)} MiB)")
    return kept.value(), timed_out, notes


class _Kept:
    """Output, bounded: the first half of MAX_OUTPUT and the latest half."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = MAX_OUTPUT // 2 - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        excess = len(self.tail) - MAX_OUTPUT // 2
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def value(self) -> bytes:
        if self.dropped:
            return bytes(self.head) + b"\n[... output left out ...]\n" + bytes(self.tail)
        return bytes(self.head + self.tail)


def _read(fd: int) -> bytes | None:
    """Up to 64 KiB; b"" at EOF; None when nothing is there after all."""
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _write(proc: subprocess.Popen[bytes], selector: selectors.BaseSelector,
           pending: memoryview) -> memoryview:
    assert proc.stdin is not None
    try:
        written = os.write(proc.stdin.fileno(), pending[:select.PIPE_BUF])
    except BlockingIOError:
        return pending
    except OSError:  # the command closed its input (BrokenPipeError): it reads no more
        written = len(pending)
    pending = pending[written:]
    if not pending:
        selector.unregister(proc.stdin.fileno())
        _close_quietly(proc.stdin)
    return pending


def _close_quietly(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        stream.close()


def _close(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            _close_quietly(stream)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _append(log: Path | None, text: str) -> None:
    if log is not None:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(text)


# The one heuristic for "the lines that say what went wrong" in a tool's output.
_ERROR_WORDS = ("error", "Error", "ERROR", "undefined reference", "undefined symbol", "fatal",
                "Fatal", "No such file", "not found", "failed", "Segmentation fault")


def error_lines(output: str, limit: int = 8, *, last: bool = False) -> tuple[str, ...]:
    """The lines of ``output`` that look like the cause, not the whole log: the first
    ``limit`` of them (a compiler's first error is the cause), or with ``last`` the last ones
    (a traceback ends with its exception); without any, the output's last lines."""
    lines = [line.rstrip() for line in output.splitlines() if line.strip(" =-")]
    hits = [line for line in lines if any(word in line for word in _ERROR_WORDS)]
    if not hits:
        return tuple(lines[-limit:])
    return tuple(hits[-limit:] if last else hits[:limit])
