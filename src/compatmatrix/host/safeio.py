"""Reading files and JSON that compatmatrix does not control, without blocking or overflowing.

Every file compatmatrix reads back — matrix.yaml, records, JUnit files, a baseline report —
may be anything by the time it is read: a folder, a FIFO (opening one for reading blocks until
someone writes), a device, a file of gigabytes. :func:`read_bounded` checks the file type
before and after opening (without blocking), and reads at most a given number of bytes.
JSON is read and written strictly: ``NaN`` and ``Infinity`` are not JSON, and a file that
holds them is as unreadable as one that holds garbage.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "MiB",
    "UnreadableFile",
    "dumps_strict",
    "finite",
    "finite_or_none",
    "loads_strict",
    "read_bounded",
    "tagged_json",
    "write_atomic",
    "write_json_atomic",
]

MiB = 1024 * 1024


class UnreadableFile(OSError):
    """A file that cannot be read as a regular file within the size bound; ``str()`` says
    why in a few words ("a FIFO (named pipe), not a file", "larger than 16 MiB")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


_KINDS = ((stat.S_ISDIR, "a folder, not a file"),
          (stat.S_ISFIFO, "a FIFO (named pipe), not a file"),
          (stat.S_ISSOCK, "a socket, not a file"),
          (stat.S_ISCHR, "a character device, not a file"),
          (stat.S_ISBLK, "a block device, not a file"))


def _kind_problem(mode: int) -> str | None:
    for test, reason in _KINDS:
        if test(mode):
            return reason
    return None if stat.S_ISREG(mode) else "not a regular file"


def _size_words(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit >= MiB and limit % MiB == 0 else f"{limit} bytes"


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, which must hold at most ``limit`` bytes.

    Raises :class:`UnreadableFile` (an OSError) for anything else, without blocking: the type
    is checked before opening, the file is opened non-blocking, checked again, and read up
    to ``limit + 1`` bytes whatever its size claims to be.
    """
    try:
        before = os.stat(path)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise UnreadableFile(_os_reason(exc)) from None
    problem = _kind_problem(before.st_mode)
    if problem is None and before.st_size > limit:
        problem = f"larger than {_size_words(limit)}"
    if problem is not None:
        raise UnreadableFile(problem)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UnreadableFile(_os_reason(exc)) from None
    try:
        problem = _kind_problem(os.fstat(fd).st_mode)  # swapped for a FIFO meanwhile?
        if problem is not None:
            raise UnreadableFile(problem)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(MiB, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except UnreadableFile:
        raise
    except OSError as exc:
        raise UnreadableFile(_os_reason(exc)) from None
    finally:
        os.close(fd)
    if size > limit:
        raise UnreadableFile(f"larger than {_size_words(limit)}")
    return b"".join(chunks)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]  # "no such file or directory"
    return str(exc)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond what a JSON number can hold here")
    return value


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` without NaN, Infinity and -Infinity (not JSON, though Python writes
    them) nor numbers that overflow to infinity (1e999); raises ValueError
    (json.JSONDecodeError is one) for anything that is not JSON. Nesting too deep for the
    parser is a ValueError too, not a RecursionError."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def dumps_strict(data: Any, **options: Any) -> str:
    """``json.dumps`` that writes no NaN or Infinity: a non-finite float (a duration that
    went wrong) is written as null, and ``allow_nan=False`` stands guard for the rest."""
    return json.dumps(finite(data), allow_nan=False, **options)


def finite(data: Any) -> Any:
    """``data`` with every NaN and infinite float (in lists, tuples and dict values) None."""
    if isinstance(data, float):
        return finite_or_none(data)
    if isinstance(data, dict):
        return {key: finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(value) for value in data]
    return data


def finite_or_none(value: float) -> float | None:
    """``value``, or None when it is NaN or infinite (what strict JSON can hold)."""
    return value if math.isfinite(value) else None


def tagged_json(lines: Iterable[str], tag: str) -> list[dict[str, Any]]:
    """The JSON objects on the lines that start with ``tag`` (which ends with a space), in
    order. A line after the tag that is not a JSON object — a forged or cut line — is
    skipped; callers check each object's fields for their types."""
    found = []
    for line in lines:
        if not line.startswith(tag):
            continue
        try:
            value = loads_strict(line[len(tag):])
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide reports from others
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    # os.umask can only be read by setting it: do it once, at import, before any thread runs
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_json_atomic(path: Path, data: Any) -> None:
    """Strict JSON: a NaN or infinite float is written as null, never as NaN."""
    write_atomic(path, dumps_strict(data, indent=2, sort_keys=True) + "\n")
