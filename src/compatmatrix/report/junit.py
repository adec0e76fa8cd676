"""JUnit files of the cells: what each one honestly shows, and one merged file for CI.

Counting follows :func:`compatmatrix.model.junit.read_junit` (one count per distinct test id, its
worst outcome), so the report agrees with the verdict the suite runner gave. What that
function cannot see needs a second look at the file, case by case in file order:

* a test that passed only on a rerun (flaky): pytest-rerunfailures either repeats the
  ``<testcase>`` (a failure, then a pass) or, Surefire-style, puts ``<flakyFailure>`` /
  ``<flakyError>`` (or ``<rerunFailure>`` / ``<rerunError>``) children into the final one;
* a test id that appears more than once and is not such a rerun: duplicated cases whose
  count would otherwise look like more tests than ran.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, JUnitXmlError, Skipped, TestCase, TestSuite

from compatmatrix.host.safeio import read_bounded
from compatmatrix.model.junit import (
    MAX_JUNIT_BYTES,
    Attempt,
    JUnitProblem,
    junit_bytes,
    junit_key,
    read_attempts,
    worst,
)

__all__ = ["JUnitEvidence", "MergeEntry", "inspect_junit", "merge_junit", "merged_text"]

_RERUN_TAGS = frozenset({"flakyFailure", "flakyError", "rerunFailure", "rerunError"})
_BAD = frozenset({"failed", "error"})


@dataclass(frozen=True)
class JUnitEvidence:
    """What one JUnit file shows; ``problem`` is set when it cannot be read at all.

    Test ids are pytest node ids when the suite runner's list of collected tests sits
    beside the file, else ``classname::name`` as JUnit has them.
    """

    problem: str = ""
    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    duplicated: int = 0                 # test ids repeated for no reason a rerun explains
    flaky: tuple[str, ...] = ()         # failed, then passed on a rerun
    failed_tests: tuple[str, ...] = ()  # failed or errored (their worst outcome)


def inspect_junit(path: Path | None) -> JUnitEvidence:
    if path is None:
        return JUnitEvidence(problem="JUnit file missing")
    try:
        attempts = read_attempts(path)
    except JUnitProblem as exc:
        return JUnitEvidence(problem=str(exc))
    cases = worst(attempts)
    runs: dict[tuple[str, str], list[Attempt]] = {}
    for attempt in attempts:
        runs.setdefault(attempt.key, []).append(attempt)
    counts = dict.fromkeys(("passed", "failed", "error", "skipped"), 0)
    for case in cases:
        counts[case.outcome] += 1
    names = _node_ids(path)
    return JUnitEvidence(
        tests=len(cases), passed=counts["passed"], failed=counts["failed"],
        errors=counts["error"], skipped=counts["skipped"],
        duplicated=sum(1 for run in runs.values() if _is_duplicated(run)),
        flaky=tuple(_test_id(key, names) for key, run in runs.items() if _is_flaky(run)),
        failed_tests=tuple(_test_id(case.key, names) for case in cases
                           if case.outcome in _BAD))


def _node_ids(junit: Path) -> dict[tuple[str, str], str]:
    """JUnit key -> pytest node id, from the collected list the suite runner keeps in
    ``<suite>.xml.state/collected.txt`` (see compatmatrix.suites.run_suite)."""
    collected = junit.with_name(junit.name + ".state") / "collected.txt"
    try:
        lines = read_bounded(collected, MAX_JUNIT_BYTES).decode("utf-8", "replace").splitlines()
    except OSError:  # missing, a FIFO, too large: test ids as JUnit has them
        return {}
    return {junit_key(nodeid): nodeid for nodeid in lines if nodeid}


def _test_id(key: tuple[str, str], names: dict[tuple[str, str], str]) -> str:
    classname, name = key
    return names.get(key) or (f"{classname}::{name}" if classname else name)


def _is_flaky(run: list[Attempt]) -> bool:
    final = run[-1]
    if final.outcome != "passed":
        return False
    return final.reruns or any(attempt.outcome in _BAD for attempt in run[:-1])


def _is_duplicated(run: list[Attempt]) -> bool:
    if len(run) < 2 or _is_flaky(run):
        return False
    # pytest itself writes a second case for an error in teardown: not a duplicate
    return not all(attempt.outcome == "error" for attempt in run[1:])


# --- merging -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeEntry:
    """One <testsuite> of the merged file: the cases of ``junit``, or one made-up case.

    ``note`` (with ``note_kind`` error, failure or skipped) stands in for a suite without a
    usable JUnit file, or for a cell that never reached its suites, so that a CI test view
    shows it instead of silently leaving it out.
    """

    name: str
    properties: tuple[tuple[str, str], ...]
    junit: Path | None = None
    note: str = ""
    note_kind: str = "skipped"
    note_type: str = ""        # the result's type attribute, e.g. compatmatrix.incompatible
    note_text: str = ""


def merge_junit(entries: Sequence[MergeEntry]) -> JUnitXml:
    xml = JUnitXml()
    for entry in entries:
        xml.add_testsuite(_suite(entry))
    # Once, at the end: junitparser's per-case statistics updates are quadratic.
    xml.update_statistics()  # type: ignore[no-untyped-call]  # unannotated in junitparser
    return xml


def merged_text(xml: JUnitXml) -> str:
    # The declaration is written here, not by the XML library, so that the bytes are the
    # same with lxml (which junitparser prefers when installed) and with ElementTree.
    body: bytes = xml.tostring()  # type: ignore[no-untyped-call]
    text = body.decode("utf-8")
    if text.startswith("<?xml"):
        text = text.split("?>", 1)[1].lstrip()
    return '<?xml version="1.0" encoding="utf-8"?>\n' + text + "\n"


def _suite(entry: MergeEntry) -> TestSuite:
    suite = TestSuite(entry.name)
    for name, value in entry.properties:
        suite.add_property(name, value)
    cases = list(_cases(entry.junit)) if entry.junit is not None else []
    if not cases and entry.note:
        cases = [_note_case(entry)]
    suite.extend(cases)  # type: ignore[no-untyped-call]  # no statistics per case
    return suite


def _cases(path: Path) -> Iterable[TestCase]:
    try:
        xml = JUnitXml.fromfile(io.BytesIO(junit_bytes(path)))
    except (JUnitProblem, OSError, SyntaxError, JUnitXmlError, ValueError):
        return ()  # inspect_junit already reported the file; the note case stands in
    return [case for suite in ([xml] if isinstance(xml, TestSuite) else xml) for case in suite]


def _note_case(entry: MergeEntry) -> TestCase:
    case = TestCase(name=entry.name.rsplit("/", 1)[-1], classname="compatmatrix", time=0.0)
    result = {"error": Error, "failure": Failure}.get(entry.note_kind, Skipped)(
        message=entry.note, type_=entry.note_type or f"compatmatrix.{entry.note_kind}")
    if entry.note_text:
        result.text = entry.note_text
    case.result = [result]
    return case
