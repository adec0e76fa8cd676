"""The one place that runs a subprocess.

Every external tool (uv, pytest, nvcc, git, the cell's Python) goes through :func:`run`: it
writes the command line to the stage's log, appends the output there, enforces a timeout by
killing the whole process group (a hung build or test leaves nothing behind), and returns a
value rather than raising.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CommandResult", "run", "stop_all"]

# Children still running, so that an interrupt can end every process group at once and no
# new one starts afterwards. This is the only process-wide state: what it tracks (live OS
# processes) is itself process-wide.
_LIVE: set[subprocess.Popen[str]] = set()
_LIVE_LOCK = threading.Lock()
_STOPPED = threading.Event()


def stop_all() -> None:
    """Kill every running child's process group and refuse to start new ones."""
    _STOPPED.set()
    with _LIVE_LOCK:
        for proc in list(_LIVE):
            _kill_group(proc)


def _register(proc: subprocess.Popen[str], live: bool) -> None:
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


def run(argv: Sequence[str], *, log: Path | None = None, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, timeout: float | None = None,
        input_text: str | None = None) -> CommandResult:
    """Run ``argv``; output (stdout and stderr together) goes to the result and to ``log``."""
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
            argv, cwd=cwd, env=dict(env) if env is not None else None, text=True,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            errors="replace")
    except OSError as exc:
        result = CommandResult(argv, 127, f"cannot run {argv[0]}: {exc.strerror}\n", 0.0)
        _append(log, result.output)
        return result
    timed_out = False
    _register(proc, True)
    try:
        output, _ = proc.communicate(input_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        output, _ = proc.communicate()
        output += f"\n[compatmatrix] timed out after {timeout:.0f} s; process group killed\n"
    except BaseException:  # Ctrl-C: never leave the child's process group running
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        _register(proc, False)
    result = CommandResult(argv, proc.returncode, output or "", time.monotonic() - start,
                           timed_out)
    _append(log, result.output + f"[exit {result.returncode} after {result.duration:.1f} s]\n")
    return result


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _append(log: Path | None, text: str) -> None:
    if log is not None:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(text)
