"""Text for people: tables with stable column widths (no colour, safe to diff), plurals, and
short stable digests for generated names."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["format_table", "plural", "short_hash"]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=False)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip()
              for row in rows]
    return "\n".join(lines)


def plural(count: int, noun: str) -> str:
    """``1 test``, ``2 tests``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def short_hash(text: str, length: int = 6) -> str:
    """A short, stable digest of ``text``, to keep generated names unique."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]
