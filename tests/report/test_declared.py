"""Declared vs measured: the verdicts on a package's declared ranges, the suggested range,
and the gate's declared_ranges check, from reports built by hand."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from compatmatrix.model.spec import Gate
from compatmatrix.report.declared import declared_ranges, lines, suggest
from compatmatrix.report.gate import evaluate
from compatmatrix.report.model import CellReport, Report, SuiteSummary
from compatmatrix.report.write import report_json

PASSING = (SuiteSummary("unit", "passed", "", 3, 3, 0, 0, 0),)
FAILING = (SuiteSummary("unit", "failed", "1 failed", 3, 2, 1, 0, 0),)


def cell(python: str, torch: str, status: str, declared: str = "torch>=2.11",
         extra: str = "", **axes: str) -> CellReport:
    ident = f"py{python}-torch{torch}" + "".join(f"-{k}{v}" for k, v in sorted(axes.items()))
    return CellReport(
        id=ident, axes={"python": python, "torch": torch, **axes}, status=status,
        stage="suite:unit" if status == "failed" else None, reason="", details=(),
        reproduce=f"compatmatrix run --cell {ident}", build_key="k", resolved={"torch": torch},
        suites=PASSING if status == "passed" else FAILING if status == "failed" else (),
        durations={}, wheel_reused=False, built_with_torch=None, running_torch=None,
        declared=((declared, extra),) if declared else ())


def report(*cells: CellReport, axes: tuple[str, ...] = ("python", "torch")) -> Report:
    return Report(1, None, axes, tuple(sorted(cells, key=lambda c: c.id)))


def test_a_range_that_admits_a_failing_version() -> None:
    found = report(cell("3.11", "2.11.0", "passed"), cell("3.11", "2.12.0", "failed"),
                   cell("3.11", "2.13.0", "passed"))
    (entry,) = declared_ranges(found)
    assert (entry.package, entry.declared, entry.verdict) == ("torch", ">=2.11",
                                                               "admits-failing")
    assert entry.failed == (("2.12.0", ("py3.11-torch2.12.0",)),)
    assert [v for v, _ in entry.passed] == ["2.11.0", "2.13.0"]
    assert entry.suggest == ">=2.11.0,<=2.13.0,!=2.12.0"
    assert entry.findings[0] == ("admits-failing: torch 2.12.0 is inside >=2.11 and fails "
                                 "(py3.11-torch2.12.0)")
    # the gate fails only when asked to, naming the package, the version and its cell
    on = evaluate(Gate(declared_ranges=True), found, None, dt.date(2026, 1, 1))
    off = evaluate(Gate(), found, None, dt.date(2026, 1, 1))
    assert not on.ok and off.ok
    (verdict,) = on.failures
    assert verdict.cell == "torch"
    assert "admits torch 2.12.0, which fails in py3.11-torch2.12.0" in verdict.message
    assert ">=2.11.0,<=2.13.0,!=2.12.0" in verdict.message
    assert verdict.reproduce == "compatmatrix run --cell py3.11-torch2.12.0"
    # written: a section in the Markdown and a key in compatibility.json
    assert report_json(found)["declared"] == [entry.to_json()]
    assert entry.to_json()["failed"] == {"2.12.0": ["py3.11-torch2.12.0"]}
    assert "| torch | `>=2.11` | 2.11.0, 2.13.0 | 2.12.0 | admits-failing |" in "\n".join(
        lines(declared_ranges(found)))


def test_a_failure_in_every_version_of_the_axis_says_nothing_about_it() -> None:
    # Python 3.12 fails whatever the torch: the failure is not torch's
    found = report(cell("3.11", "2.11.0", "passed"), cell("3.11", "2.13.0", "passed"),
                   cell("3.12", "2.11.0", "failed"), cell("3.12", "2.13.0", "failed"))
    (entry,) = declared_ranges(found)
    assert entry.failed == () and entry.verdict == "holds"
    assert entry.suggest == ">=2.11.0,<=2.13.0"


def test_a_bound_never_measured() -> None:
    found = report(cell("3.11", "2.12.0", "passed", "torch<=2.13,>=2.4"),
                   cell("3.11", "2.13.0", "passed", "torch<=2.13,>=2.4"))
    (entry,) = declared_ranges(found)
    assert entry.verdict == "untested-bound"
    assert any("admits torch 2.4" in f and "no cell measured a 2.4 release" in f
               for f in entry.findings)
    assert not any("admits torch 2.13" in f for f in entry.findings)  # measured


def test_a_version_that_passes_outside_the_range() -> None:
    found = report(cell("3.11", "2.11.0", "passed", "torch<2.13,>=2.11"),
                   cell("3.11", "2.13.0", "passed", "torch<2.13,>=2.11"))
    (entry,) = declared_ranges(found)
    assert entry.verdict == "passes-outside"
    assert entry.suggest == ">=2.11.0,<=2.13.0"
    assert "torch 2.13.0 passes outside <2.13,>=2.11" in entry.findings[0]


def test_a_range_that_holds() -> None:
    found = report(cell("3.11", "2.11.0", "passed"), cell("3.11", "2.13.0", "passed"),
                   cell("3.11", "2.9.0", "failed"))
    (entry,) = declared_ranges(found)
    # 2.9.0 fails, outside the range: that is what the range is for
    assert entry.verdict == "holds" and entry.findings == ()
    assert evaluate(Gate(declared_ranges=True), found, None, dt.date(2026, 1, 1)).ok


def test_one_entry_per_declared_specifier_each_judged_by_its_own_cells() -> None:
    # a wheel built per torch declares the torch it was built with
    found = report(cell("3.11", "2.11.0", "passed", "torch<2.12,>=2.11"),
                   cell("3.11", "2.13.0", "failed", "torch<2.14,>=2.13"),
                   cell("3.12", "2.13.0", "passed", "torch<2.14,>=2.13"),
                   cell("3.12", "2.11.0", "passed", "torch<2.12,>=2.11"))
    first, second = declared_ranges(found)
    assert (first.declared, first.verdict) == ("<2.12,>=2.11", "holds")
    assert [v for v, _ in first.passed] == ["2.11.0"]
    assert (second.declared, second.verdict) == ("<2.14,>=2.13", "admits-failing")


def test_an_extras_range_counts_only_where_the_extra_is_in_play() -> None:
    found = report(
        cell("3.11", "2.11.0", "passed", "vllm>=0.10", "serve", vllm="0.10.0", extras="serve"),
        cell("3.11", "2.11.0", "failed", "vllm>=0.10", "serve", vllm="0.11.0", extras="serve"),
        cell("3.11", "2.11.0", "passed", "", "", vllm="0.11.0", extras="none"),
        axes=("python", "torch", "vllm", "extras"))
    entries = {e.package: e for e in declared_ranges(found)}
    entry = entries["vllm"]
    assert entry.extra == "serve" and entry.verdict == "admits-failing"
    assert [v for v, _ in entry.passed] == ["0.10.0"]  # not the cell without the extra
    assert "(extra serve)" in "\n".join(lines([entry]))


def test_axes_the_metadata_does_not_constrain_have_no_entry() -> None:
    found = report(cell("3.11", "2.13.0", "passed", "numpy>=1.21"))
    assert declared_ranges(found) == ()


versions = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 12), st.integers(0, 3)),
                    min_size=1, max_size=8, unique=True)


@given(versions, versions)
def test_the_suggestion_admits_every_pass_and_no_failure(good: list[tuple[int, ...]],
                                                         bad: list[tuple[int, ...]]) -> None:
    passed = {".".join(map(str, v)) for v in good}
    failed = {".".join(map(str, v)) for v in bad} - passed
    spec = SpecifierSet(suggest(passed, failed))
    assert all(spec.contains(v) for v in passed)
    assert not any(spec.contains(v) for v in failed)
    # bounded at measured versions
    assert min(map(Version, passed)) in [Version(s.version) for s in spec]


def test_nothing_passed_suggests_nothing() -> None:
    assert suggest([], ["2.12.0"]) == ""
