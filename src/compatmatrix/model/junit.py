"""JUnit files as evidence: the one reader, shared by the suite runner and the report.

Test cases are counted from the file itself, never from its summary attributes. A file is
parsed once into every ``<testcase>`` in file order (an *attempt*); from those come the
distinct tests with their worst outcome (what the verdict counts), the flaky ones (failed,
then passed on a rerun) and the duplicated ones (repeated for no reason a rerun explains).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from junitparser import JUnitXml, Skipped, TestCase, TestSuite

from compatmatrix.host.safeio import MiB, read_bounded, write_atomic

__all__ = [
    "MAX_JUNIT_BYTES",
    "Attempt",
    "JUnitCase",
    "JUnitProblem",
    "junit_bytes",
    "junit_key",
    "read_attempts",
    "read_junit",
    "worst",
    "write_not_run_junit",
]

MAX_JUNIT_BYTES = 64 * MiB  # 2,000 test cases are about 1 MiB
_SEVERITY = {"failed": 3, "error": 2, "passed": 1, "skipped": 0}
_RERUN_TAGS = frozenset({"flakyFailure", "flakyError", "rerunFailure", "rerunError"})
_LOCATION_LINE = re.compile(r"^\S+:\d+: ([A-Za-z_][\w.]*)$")


class JUnitProblem(Exception):
    """The JUnit file cannot be trusted: missing, empty or not JUnit XML."""


@dataclass(frozen=True)
class Attempt:
    """One ``<testcase>`` element: a run of a test."""

    key: tuple[str, str]  # (classname, name), as pytest writes a test id into JUnit
    outcome: str  # passed, failed, error, skipped
    message: str  # first meaningful line of a failure or error, a skip's reason; else ""
    reruns: bool  # carries flaky*/rerun* children: it is itself the end of reruns


@dataclass(frozen=True)
class JUnitCase:
    """One distinct test in a JUnit file, with the worst of its outcomes."""

    key: tuple[str, str]
    outcome: str
    message: str


def junit_bytes(path: Path) -> bytes:
    """The bytes of a JUnit file, for the parser: JUnitProblem when it is missing, not a
    regular file (a FIFO is never opened: it would block), over MAX_JUNIT_BYTES, empty, or
    declares a DOCTYPE (entities; pytest never writes one, and entity expansion is how an
    XML file of kilobytes becomes gigabytes)."""
    if not os.path.lexists(path):
        raise JUnitProblem("JUnit file missing")
    try:
        data = read_bounded(path, MAX_JUNIT_BYTES)
    except OSError as exc:
        raise JUnitProblem(f"JUnit file unreadable ({exc})") from None
    if not data:
        raise JUnitProblem("JUnit file is empty")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise JUnitProblem("JUnit file unreadable (it declares a DOCTYPE or entities, which "
                           "JUnit files do not)")
    return data


def read_attempts(path: Path) -> tuple[Attempt, ...]:
    """Every ``<testcase>`` of the file, in file order; JUnitProblem when it is no JUnit."""
    try:
        root = ET.fromstring(junit_bytes(path))
    except (ET.ParseError, ValueError) as exc:
        raise JUnitProblem(f"JUnit file unreadable ({exc})") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitProblem("JUnit file unreadable (XML, but its root is neither "
                           "<testsuites> nor <testsuite>)")
    return tuple(_attempt(elem) for elem in root.iter("testcase"))


def read_junit(path: Path) -> tuple[JUnitCase, ...]:
    """The distinct tests of the file, each with its worst outcome.

    A test id that appears twice (pytest writes a second case for a teardown error after a
    failure; reruns repeat a test) counts once.
    """
    return worst(read_attempts(path))


def worst(attempts: tuple[Attempt, ...]) -> tuple[JUnitCase, ...]:
    cases: dict[tuple[str, str], JUnitCase] = {}
    for attempt in attempts:
        previous = cases.get(attempt.key)
        if previous is None or _SEVERITY[attempt.outcome] > _SEVERITY[previous.outcome]:
            cases[attempt.key] = JUnitCase(attempt.key, attempt.outcome, attempt.message)
    return tuple(cases.values())


def _attempt(elem: ET.Element) -> Attempt:
    key = (elem.get("classname") or "", elem.get("name") or "")
    children = list(elem)
    reruns = any(child.tag in _RERUN_TAGS for child in children)
    for tag, outcome in (("failure", "failed"), ("error", "error")):
        found = next((child for child in children if child.tag == tag), None)
        if found is not None:
            return Attempt(key, outcome, _failure_line(found.get("message"), found.text),
                           reruns)
    skips = [child for child in children if child.tag == "skipped"]
    if skips:
        return Attempt(key, "skipped", str(skips[0].get("message") or "").strip()[:300],
                       reruns)
    return Attempt(key, "passed", "", reruns)


def _failure_line(message: object, text: object) -> str:
    """"AssertionError: assert 1 == 2" from pytest's message and traceback text."""
    message = str(message or "").strip()
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    if message in ("", "collection failure"):
        # The message says nothing; the traceback's "E   ..." line says what broke.
        message = next((line[1:].strip() for line in lines if line.startswith("E ")), message)
    first = message.splitlines()[0] if message else "(no message)"
    located = _LOCATION_LINE.match(lines[-1]) if lines else None
    if located and located.group(1) not in first:
        first = f"{located.group(1)}: {first}"  # pytest drops the type for assertions
    return first[:300]


def junit_key(nodeid: str) -> tuple[str, str]:
    """(classname, name) that pytest's junitxml writes for ``nodeid``."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def write_not_run_junit(path: Path, cell_id: str, suite_name: str, reason: str) -> None:
    """A JUnit file with one skipped case, so that a suite not run is visible, not missing."""
    case = TestCase(name=suite_name, classname=f"compatmatrix.{suite_name}", time=0.0)
    case.result = [Skipped(message=reason, type_="compatmatrix.not_run")]
    suite = TestSuite(cell_id)
    suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    xml.update_statistics()  # type: ignore[no-untyped-call]  # unannotated in junitparser
    body: bytes = xml.tostring()  # type: ignore[no-untyped-call]
    write_atomic(path, body.decode("utf-8"))
