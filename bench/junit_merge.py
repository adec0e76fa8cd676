"""Merging JUnit files into the report's junit.xml: 200 files of 2,000 test cases each.

Run by hand: python bench/junit_merge.py [--files N] [--cases N]

Prints the seconds to merge them (parse, one <testsuite> each, one statistics update) and to
serialise the result, and, for comparison, the seconds that reading every file's evidence
takes (what ``collect`` does per suite: counts, flaky tests, duplicates).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from compatmatrix.report.junit import MergeEntry, inspect_junit, merge_junit, merged_text


def junit_file(cell: str, cases: int) -> str:
    """A file like pytest's: one line, a failure every 50 cases, a skip every 100."""
    parts = []
    for i in range(cases):
        inner = ""
        if i % 50 == 7:
            inner = ('<failure message="AssertionError: assert 1 == 2">def test():\n'
                     "&gt;       assert 1 == 2\nE       assert 1 == 2</failure>")
        elif i % 100 == 3:
            inner = '<skipped type="pytest.skip" message="needs a GPU">skip</skipped>'
        parts.append(f'<testcase classname="tests.unit.test_ops" name="test_op[{i}-float32]" '
                     f'time="0.00{i % 10}">{inner}</testcase>')
    return ('<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
            f'<testsuite name="{cell}" errors="0" failures="0" skipped="0" tests="{cases}" '
            f'time="1.0" timestamp="2026-01-01T00:00:00" hostname="ci">{"".join(parts)}'
            "</testsuite></testsuites>")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--cases", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        entries = []
        for n in range(args.files):
            cell = f"py3.{10 + n % 3}-torch2.{n}.0-cu130"
            path = Path(tmp) / f"{n}.xml"
            path.write_text(junit_file(cell, args.cases), encoding="utf-8")
            entries.append(MergeEntry(f"{cell}/unit", (("cell", cell), ("suite", "unit")),
                                      junit=path))
        start = time.perf_counter()
        xml = merge_junit(entries)
        merged = time.perf_counter()
        text = merged_text(xml)
        written = time.perf_counter()
        for entry in entries:
            inspect_junit(entry.junit)
        inspected = time.perf_counter()
    total = args.files * args.cases
    print(f"{args.files} files x {args.cases} cases = {total} test cases, "
          f"merged file {len(text) / 1e6:.0f} MB")
    print(f"merge: {merged - start:.2f} s, serialise: {written - merged:.2f} s, "
          f"total {written - start:.2f} s")
    print(f"inspect every file (collect's counting): {inspected - written:.2f} s")


if __name__ == "__main__":
    main()
