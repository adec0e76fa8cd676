"""uv, the one tool every environment goes through: which uv, where packages come from
(the variant's index, find-links folders), the lock's pin lines, and uv's output read once —
the pins it resolved, its explanation, and whether a failure is a proof from metadata or
rests on something missing here.
"""

from __future__ import annotations

import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging.utils import canonicalize_name

from compatmatrix.errors import UsageError

__all__ = ["NETWORK", "UNSATISFIABLE", "Sources", "choose_sources", "conflict_clause",
           "explanation",
           "index_problem", "involves_missing", "missing_facts", "parse_pins", "pin_line",
           "plain_lines", "uv_command",
           "uv_source_args"]


def uv_command(env: Mapping[str, str]) -> tuple[str, ...]:
    """The uv that ships with compatmatrix (a dependency), else the one on PATH."""
    try:
        from uv import find_uv_bin

        return (find_uv_bin(),)
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv", path=env.get("PATH"))
        if found is None:
            raise UsageError("uv is not installed: pip install uv") from None
        return (found,)


UNSATISFIABLE = ("No solution found", "requirements are unsatisfiable")


NETWORK = ("error sending request", "Failed to fetch", "dns error", "Connect", "timed out",
           "Could not connect", "Network is unreachable")


@dataclass(frozen=True)
class Sources:
    """Where a cell's packages come from: PyPI, the variant's index, find-links folders."""

    index_url: str | None
    find_links: tuple[str, ...]
    note: str = ""  # e.g. why the variant's index is not used


def pin_line(name: str, version: str) -> str:
    """A lock line; unlabelled torch builds use ``===`` for the reason given above."""
    if canonicalize_name(name) == "torch" and "+" not in version:
        return f"{name}==={version}"
    return f"{name}=={version}"


# In uv's derivation, clauses that say a version or a file is missing here, rather than
# that two requirements contradict each other.
_MISSING = ("there is no version of", "there are no versions of", "no versions of",
            "is available and you require", "was not found in", "not found in the package",
            "has no wheels", "no wheels with a matching", "only the following versions",
            "could not be found", "is unavailable")


def involves_missing(explanation: str) -> bool:
    """Whether uv's derivation rests on versions or files missing from the indexes it asked,
    not only on the cell's pins and the packages' own requirements (a proof from metadata,
    which holds offline as online)."""
    lowered = " ".join(explanation.lower().split())
    return any(marker in lowered for marker in _MISSING)


def explanation(output: str) -> str:
    """uv's own words, minus our log decoration."""
    lines = [line for line in output.splitlines() if not line.startswith("[compatmatrix]")]
    return "\n".join(lines).strip()


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def parse_pins(output: str) -> dict[str, str]:
    pins = {}
    for line in output.splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[canonicalize_name(match[1])] = match[2].split(";")[0]
    return dict(sorted(pins.items()))


def uv_source_args(sources: Sources) -> list[str]:
    args: list[str] = []
    if sources.index_url:
        args += ["--index", sources.index_url]  # before PyPI: torch comes from the variant
    for link in sources.find_links:
        args += ["--find-links", link]
    return args


def choose_sources(index_url: str | None, find_links: Sequence[str]) -> Sources:
    """Use the variant's index when it answers; otherwise fall back to find-links."""
    if index_url is None:
        return Sources(None, tuple(find_links))
    problem = index_problem(index_url)
    if problem is None:
        return Sources(index_url, tuple(find_links))
    return Sources(None, tuple(find_links), f"index {index_url} is not reachable ({problem})")


@cache
def index_problem(url: str) -> str | None:
    """None when the index answers; else why not. Asked once per run, with a short timeout."""
    if url.startswith("file://") or "://" not in url:
        path = Path(url[len("file://"):] if url.startswith("file://") else url)
        return None if path.is_dir() else f"{path} does not exist"
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/", timeout=5):
            return None
    except urllib.error.HTTPError as exc:
        return None if exc.code < 500 else f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


# --- uv's explanation, read for people -------------------------------------------------------

_BECAUSE = re.compile(r"\bBecause (.+?),? we can conclude")
# uv's decorations: "  \u00d7 No solution found", "  \u2570\u2500\u25b6 Because ...", "  cause: ..."
_MARKS_PREFIX = re.compile("^[\\s\u00d7\u2570\u2500\u25b6\u2502|]*(?:cause:|error:)?\\s*")
_REACHABLE = re.compile(r"index \S+ is not reachable(?: \([^)]*\))?")


def plain_lines(details: Iterable[str]) -> list[str]:
    """uv's explanation lines without its decorations."""
    return [_MARKS_PREFIX.sub("", line).strip() for line in details]


def conflict_clause(details: Sequence[str], fallback: str = "") -> str:
    """uv's proof in one clause: ``vllm==0.30.0 depends on torch==2.13.0 and you require
    torch==2.9.0``, from the first "Because ..." that names a dependency; else its first
    line; else ``fallback``."""
    lines = plain_lines(details)
    clauses = _BECAUSE.findall(" ".join(lines))  # uv may wrap one sentence over lines
    best = next((c for c in clauses if " depends on " in c), clauses[0] if clauses else "")
    return best or next((line for line in lines if line and "No solution found" not in line),
                        fallback)


def missing_facts(details: Sequence[str]) -> list[str]:
    """What an unavailable resolution says was missing: unreachable indexes, uv's clauses
    and hints, in order."""
    lines = plain_lines(details)
    text = " ".join(lines)
    return [*_REACHABLE.findall(text), *_BECAUSE.findall(text),
            *(line.removeprefix("hint:").strip() for line in lines if line.startswith("hint:"))]
