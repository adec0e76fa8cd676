"""What a person sees while cells run.

On a terminal, a live block redrawn twice a second: counts of cells done / running / queued,
each running cell with its current stage and elapsed time, and one permanent line per
finished cell above it. Elsewhere (CI logs), plain lines: one when a cell starts a stage (in
verbose mode) and one when it finishes. Quiet prints nothing but the final summary.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import Protocol, TextIO

from compatmatrix.model.record import CellRecord

__all__ = ["LineProgress", "LiveProgress", "Progress", "make_progress"]


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def stage(self, cell_id: str, stage: str) -> None: ...
    def finished(self, record: CellRecord) -> None: ...
    def close(self) -> None: ...


def outcome(record: CellRecord) -> str:
    text = record.status.value + (" (reused)" if record.reused else "")
    if record.stage:
        text += f" at {record.stage}"
    reason = (record.reason.splitlines() or [""])[0]
    return text + (f": {reason}" if reason else "")  # whole: the cause is often at its end


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.done = 0
        self.running: dict[str, tuple[str, float]] = {}  # cell -> (stage, started)
        self.started = time.monotonic()

    def header(self) -> str:
        queued = self.total - self.done - len(self.running)
        elapsed = _clock(time.monotonic() - self.started)
        return (f"[{elapsed}] {self.done}/{self.total} done, {len(self.running)} running, "
                f"{queued} queued")


class LineProgress:
    """Plain lines for logs; ``verbosity`` 0 = quiet, 1 = normal, 2 = every stage."""

    def __init__(self, stream: TextIO = sys.stdout, verbosity: int = 1) -> None:
        self._stream, self._verbosity, self._counts = stream, verbosity, _Counts()

    def start(self, total: int) -> None:
        self._counts.total = total
        self._print(f"running {total} cells")

    def stage(self, cell_id: str, stage: str) -> None:
        with self._counts.lock:
            self._counts.running[cell_id] = (stage, time.monotonic())
            line = f"{self._counts.header()} {cell_id}: {stage}"
        if self._verbosity >= 2:
            self._print(line)

    def finished(self, record: CellRecord) -> None:
        with self._counts.lock:
            self._counts.running.pop(record.cell, None)
            self._counts.done += 1
            line = f"{self._counts.header()} {record.cell}: {outcome(record)}"
        self._print(line)

    def close(self) -> None:
        pass

    def _print(self, line: str) -> None:
        if self._verbosity >= 1:
            print(line, file=self._stream, flush=True)


class LiveProgress:
    """A block redrawn in place on a terminal."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self._stream, self._counts = stream, _Counts()
        self._drawn = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self, total: int) -> None:
        self._counts.total = total
        self._thread.start()

    def stage(self, cell_id: str, stage: str) -> None:
        with self._counts.lock:
            self._counts.running[cell_id] = (stage, self._counts.running.get(
                cell_id, ("", time.monotonic()))[1])

    def finished(self, record: CellRecord) -> None:
        with self._counts.lock:
            self._counts.running.pop(record.cell, None)
            self._counts.done += 1
            self._clear()
            self._stream.write(f"{record.cell}: {outcome(record)}\n")
            self._draw()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._counts.lock:
            self._clear()
            self._stream.write(self._counts.header() + "\n")
            self._stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            with self._counts.lock:
                self._clear()
                self._draw()

    def _draw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        now = time.monotonic()
        lines = [self._counts.header()]
        for cell, (stage, started) in sorted(self._counts.running.items()):
            lines.append(f"  {cell}  {stage}  {_clock(now - started)}")
        self._stream.write("".join(line[:width] + "\n" for line in lines))
        self._stream.flush()
        self._drawn = len(lines)

    def _clear(self) -> None:
        if self._drawn:
            self._stream.write(f"\x1b[{self._drawn}F\x1b[J")  # up N lines, clear below
            self._drawn = 0


def make_progress(verbosity: int, stream: TextIO = sys.stdout) -> Progress:
    if verbosity == 1 and stream.isatty():
        return LiveProgress(stream)
    return LineProgress(stream, verbosity)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"
