"""Hostile input: matrix files, evidence and subprocesses made to crash or hang compatmatrix.

Each case ends within seconds in exit 2 (bad input) with one message that names the file (and
line:col where there is one) and says what to do, or in a failed verdict (bad evidence): a
cell shown as missing, a suite without its evidence. Never a traceback, never a hang.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from compatmatrix.cli import main
from compatmatrix.doctor import environment as _doctor_env
from compatmatrix.doctor.environment import CannotInspect, Environment, Installer
from compatmatrix.doctor.extensions import Extension, load_extensions
from compatmatrix.doctor.torchcheck import torch_facts
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.gpu import gpu_capabilities, kind_problem
from compatmatrix.host.safeio import dumps_strict, loads_strict
from compatmatrix.host.toolchain import parse_include_dirs
from compatmatrix.model.record import CellRecord, Status, read_record
from compatmatrix.report.model import CellReport, Report
from compatmatrix.report.write import write_report
from compatmatrix.stages.build import read_torch_facts
from compatmatrix.stages.identity import check_identity
from tests.conftest import make_package

SECONDS = 15  # "within seconds", with room for a loaded 2-core machine


@contextlib.contextmanager
def within(seconds: float = SECONDS) -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < seconds, f"took {time.monotonic() - start:.1f} s"


def cli(*args: str) -> tuple[int, str, str]:
    """compatmatrix in this process: (exit code, stdout, stderr); an exception fails."""
    out, err = io.StringIO(), io.StringIO()
    with within(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """compatmatrix as a process: what a person sees, tracebacks included."""
    with within():
        done = subprocess.run([sys.executable, "-m", "compatmatrix", *args], cwd=cwd,
                              capture_output=True, text=True, timeout=SECONDS * 2)
    assert "Traceback" not in done.stderr, done.stderr
    return done


BASE = 'version: 1\nproject: {path: pkg, import: pkg}\naxes:\n  python: ["3.11"]\n'


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_package(tmp_path / "pkg")
    return tmp_path


def refused(folder: Path, content: str | bytes) -> tuple[int, int, str]:
    """Write ``content`` as matrix.yaml, plan it: exit 2, one message naming the file with
    its line and column; returns (line, column, message)."""
    path = folder / "matrix.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    code, _, err = cli("plan", "--matrix", str(path))
    assert code == 2, err
    assert err.startswith(f"compatmatrix: {path}:"), err
    assert err.count("compatmatrix:") == 1
    place, _, message = err[len(f"compatmatrix: {path}:"):].partition(": error: ")
    line, column = (int(n) for n in place.split(":"))
    return line, column, message


# --- matrix.yaml -------------------------------------------------------------------------


def test_non_utf8_bytes_are_located(folder: Path) -> None:
    line, column, message = refused(folder, BASE.encode().replace(b'"3.11"', b'"3.\xff1"'))
    assert (line, column) == (4, len('  python: ["3.') + 1)
    assert "not UTF-8 text (byte 0xff here)" in message and "save it as UTF-8" in message


def test_a_nul_byte_is_located(folder: Path) -> None:
    line, column, message = refused(folder, BASE.replace("import: pkg", "import: p\0kg"))
    assert (line, column) == (2, len("project: {path: pkg, import: p") + 1)
    assert "'\\x00' is not allowed in YAML" in message


@pytest.mark.parametrize("text", ["[" * 100_000, "{a: " * 100_000, "- " * 100_000,
                                  "a:\n" + "".join(" " * i + "- \n" for i in range(1, 300))])
def test_deep_nesting_is_refused_before_it_is_built(folder: Path, text: str) -> None:
    _, _, message = refused(folder, text)
    assert "nested more than 64 levels deep" in message


def test_deep_nesting_in_a_process_ends_in_exit_2(folder: Path) -> None:
    (folder / "matrix.yaml").write_text("[" * 100_000, encoding="utf-8")
    done = run_cli("plan", cwd=folder)
    assert done.returncode == 2 and "matrix.yaml:1:65: error: values nested" in done.stderr


def test_a_recursive_alias_is_refused_at_the_alias(folder: Path) -> None:
    line, column, message = refused(folder, "a: &x [*x]\n")
    assert (line, column) == (1, 8)
    assert "*x refers to a value that contains it" in message


BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=False))


def test_an_alias_bomb_is_refused_at_the_alias_past_the_budget(folder: Path) -> None:
    # a: 10 values, b: 91, c: 820, d: 7,381 -- the first *d pushes the expansions past
    # 10,000, on line 5; the last line alone would be 9**8 = 43 million values
    line, column, message = refused(folder, BILLION_LAUGHS)
    assert (line, column) == (5, 8)
    assert "aliases expand to more than 10,000 values (here: *d)" in message


def test_a_few_aliases_are_fine(folder: Path) -> None:
    text = BASE.replace('["3.11"]', '&py ["3.11"]') + "suites:\n  unit: {paths: &p [t]}\n" \
        "  more: {paths: *p}\ngate: {required: [{python: \"3.11\"}]}\n"
    (folder / "matrix.yaml").write_text(text, encoding="utf-8")
    code, _, err = cli("plan", "--json", "--matrix", str(folder / "matrix.yaml"))
    assert code == 0, err


@pytest.mark.parametrize(("extra", "written", "number"), [
    ("", "017", "the octal number 15"),  # python: [017]: 15 to PyYAML, not "017" nor 3.x
    ("\n  torch: [1:30]", "1:30", "the base 60 number 90"),
    ("\n  torch: [0x1F]", "0x1F", "the hexadecimal number 31"),
    ("\ntimeouts: {build: 1_000}", "1_000", "the with '_' separators number 1000"),
    ("\ntimeouts: {build: 0b11}", "0b11", "the binary number 3"),
    ("\nci: {timeout_minutes: 0017}", "0017", "the octal number 15"),
    ("\n  torch: [2_1.5]", "2_1.5", "number 21.5"),
])
def test_yaml_1_1_numbers_are_refused_with_a_hint(folder: Path, extra: str, written: str,
                                                  number: str) -> None:
    text = BASE.replace('["3.11"]', '["3.11"]' + extra) if extra else \
        BASE.replace('["3.11"]', "[017]")
    line, column, message = refused(folder, text)
    assert text.splitlines()[line - 1][column - 1:].startswith(written), (line, column)
    assert number in message and "YAML 1.1" in message
    assert f'quote it ("{written}") if it is text' in message
    assert "if it is that number" in message or "write a plain number" in message


def test_plain_numbers_and_quoted_forms_are_fine(folder: Path) -> None:
    text = BASE.replace('["3.11"]', '["3.11"]\n  torch: ["017"]') + \
        "timeouts: {build: 1000, suite: +90}\nci: {timeout_minutes: 90}\n"
    (folder / "matrix.yaml").write_text(text, encoding="utf-8")
    code, out, err = cli("plan", "--json", "--matrix", str(folder / "matrix.yaml"))
    assert code == 0, err  # quoted, "017" is text: here a version string
    assert loads_strict(out)[0]["axes"]["torch"] == "017"


def test_an_overlong_project_path_is_refused(folder: Path) -> None:
    line, column, message = refused(folder, BASE.replace("path: pkg", "path: " + "a" * 10_000))
    assert (line, column) == (2, 17)
    assert "project.path is 10,000 characters long" in message


def test_a_project_path_the_os_refuses_is_refused(folder: Path) -> None:
    line, _, message = refused(folder, BASE.replace("path: pkg", "path: " + "a" * 300))
    assert line == 2 and "project.path 'aaaa" in message
    assert "cannot be used: File name too long" in message


def test_a_project_path_with_a_nul_is_refused(folder: Path) -> None:
    line, column, message = refused(folder, BASE.replace("path: pkg", 'path: "p\\0kg"'))
    assert (line, column) == (2, 17) and "NUL character" in message


HUGE = str(10**400)


@pytest.mark.parametrize(("extra", "what"), [
    (f"timeouts: {{build: {HUGE}}}", "timeouts.build must be at most 604800 s, got a number "
                                     "of 401 digits"),
    (f"timeouts: {{build: -{HUGE}}}", "timeouts.build must be at least 1 s"),
    ("timeouts: {build: 604801}", "timeouts.build must be at most 604800 s, got 604801"),
    (f"ci: {{timeout_minutes: {HUGE}}}", "ci.timeout_minutes must be at most 10080 minutes"),
    (f"suites: {{unit: {{paths: [t], timeout: {HUGE}}}}}", "suite 'unit'.timeout must be at most"),
    ("suites: {unit: {paths: [t], workers: 99999999999999999999}}", "workers must be 'auto'"),
    ('suites: {unit: {paths: [t], workers: "\u00b2"}}', "workers must be 'auto'"),
])
def test_huge_numbers_are_refused(folder: Path, extra: str, what: str) -> None:
    line, _, message = refused(folder, BASE + extra + "\n")
    assert line == 5 and what in message


def test_a_matrix_of_too_many_cells_is_refused(folder: Path) -> None:
    values = ", ".join(f'"1.{i}"' for i in range(20))
    axes = "".join(f"  p{n}: [{values}]\n" for n in range(5))  # 20**5 = 3.2 million
    line, _, message = refused(folder, BASE + axes)
    assert line == 4 and "3,200,000 combinations" in message


def test_a_file_over_4_mib_is_refused_unread(folder: Path) -> None:
    path = folder / "matrix.yaml"
    with path.open("wb") as handle:
        handle.truncate(5 * 1024 * 1024 * 1024)  # sparse: 5 GiB of nothing
    code, _, err = cli("plan", "--matrix", str(path))
    assert code == 2 and "cannot read the file: larger than 4 MiB" in err


@pytest.mark.parametrize("make", ["folder", "fifo", "device", "missing"])
def test_a_matrix_that_is_not_a_file(folder: Path, make: str) -> None:
    path = {"device": Path("/dev/null")}.get(make, folder / "matrix.yaml")
    if make == "folder":
        path.mkdir()
    elif make == "fifo":
        os.mkfifo(path)
    code, _, err = cli("plan", "--matrix", str(path))
    assert code == 2 and err.startswith(f"compatmatrix: {path}:1:1: error: ")
    assert {"folder": "a folder, not a file", "fifo": "a FIFO (named pipe), not a file",
            "device": "a character device, not a file",
            "missing": "matrix file not found"}[make] in err
    assert "--matrix FILE" in err


# A valid matrix using every key of the reference; each test below puts the wrong type in
# one place: a mapping where a list (or a value) belongs, and a list where a mapping (or a
# value) belongs.
REFERENCE: dict[str, Any] = {
    "version": 1,
    "project": {"path": "pkg", "import": "pkg", "abi3": ">=2.6",
                "build_torch_attr": "pkg.__torch__", "test_requires": ["pytest>=8"],
                "cuda_archs": ["9.0"], "nvcc": "auto"},
    "axes": {"python": ["3.11"], "cuda": ["cpu"], "extras": ["none"], "torch": ["2.13.0"],
             "vllm": ["none"]},
    "exclude": [{"torch": "<2.10", "cuda": "cpu"}],
    "include": [{"python": "3.11", "torch": "2.13.0", "cuda": "cpu"}],
    "indexes": {"cpu": "https://download.pytorch.org/whl/cpu", "find_links": ["pip-config"]},
    "suites": {"unit": {"paths": ["t"], "workers": "auto", "args": ["-x"], "timeout": 900,
                        "requires": {"gpu": "h100"}}},
    "gate": {"required": [{"python": "3.11"}], "fail_on_incompatible": False,
             "fail_on_new": False,
             "quarantine": [{"test": "t::x", "reason": "flaky", "expires": "2027-01-31"}]},
    "ci": {"runners": {"cpu": {"github": ["ubuntu-latest"], "buildkite": "default"}},
           "timeout_minutes": 90, "install": "."},
    "interpreters": {"3.13": "/nonexistent/python3.13"},
    "timeouts": {"build": 3600},
}


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _wrong_types(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [{"WRONG": 1}]
    if isinstance(value, dict):
        return [["WRONG"]]
    return [["WRONG"], {"WRONG": 1}]


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        tree = tree[step]
    return tree


WRONG = [(path, wrong) for path in _paths(REFERENCE) for wrong in _wrong_types(
    _get(REFERENCE, path))]
# values for which a list is right too: one value stands for a list of one
LIST_OR_VALUE = {("project", "test_requires"), ("suites", "unit", "paths"),
                 ("suites", "unit", "args"), ("indexes", "find_links"),
                 ("ci", "runners", "cpu", "github"), ("axes", "extras", 0)}


def test_the_reference_matrix_is_valid(folder: Path) -> None:
    (folder / "matrix.yaml").write_text(yaml.safe_dump(REFERENCE), encoding="utf-8")
    code, _, err = cli("plan", "--matrix", str(folder / "matrix.yaml"))
    assert code == 0, err


@pytest.mark.parametrize(("path", "wrong"), WRONG, ids=[
    ".".join(map(str, p)) + ("=list" if isinstance(w, list) else "=map") for p, w in WRONG])
def test_a_wrong_type_in_any_key_is_located(folder: Path, path: tuple[Any, ...],
                                            wrong: Any) -> None:
    tree = json.loads(json.dumps(REFERENCE))
    _get(tree, path[:-1])[path[-1]] = wrong
    text = yaml.safe_dump(tree)
    if path in LIST_OR_VALUE and isinstance(wrong, list):
        return  # ["WRONG"] is a list of one value: not a wrong type there
    line, _, message = refused(folder, text)
    assert "WRONG" in text.splitlines()[line - 1], (text, line, message)
    assert message.strip()


# --- evidence: the work directory and the baseline -------------------------------------

EVIDENCE_MATRIX = """
version: 1
project: {path: pkg, import: pkg}
axes:
  python: ["3.9", "3.10", "3.11", "3.12", "3.13"]
  torch: ["2.9.0", "2.13.0"]
suites:
  unit: {paths: [t]}
gate:
  required: [{python: "3.11"}]
"""
JUNIT = ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="c" tests="1">'
         '<testcase classname="t" name="test_ok"/></testsuite></testsuites>')


def passed_record(cell: str, **changes: Any) -> dict[str, Any]:
    python, torch = cell.removeprefix("py").split("-torch")
    return {"schema": 1, "cell": cell, "axes": {"python": python, "torch": torch},
            "status": "passed",
            "suites": {"unit": {"name": "unit", "status": "passed", "reason": "",
                                "collected": 1, "passed": 1, "failed": 0, "errors": 0,
                                "skipped": 0}}, **changes}


@pytest.fixture
def evidence(folder: Path) -> Path:
    (folder / "matrix.yaml").write_text(EVIDENCE_MATRIX, encoding="utf-8")
    (folder / "run" / "results").mkdir(parents=True)
    return folder


def write_record(run: Path, cell: str, content: Any) -> Path:
    path = run / "results" / f"{cell}.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content),
                        encoding="utf-8")
    return path


def report_json(folder: Path, *extra: str) -> dict[str, Any]:
    code, _, err = cli("report", "--matrix", str(folder / "matrix.yaml"), "--from",
                       str(folder / "run"), "--out", str(folder / "reports"), *extra)
    assert code == 0, err
    data: dict[str, Any] = loads_strict((folder / "reports" / "compatibility.json").read_text())
    return data


def cells(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cell["id"]: cell for cell in data["cells"]}


BAD_RECORDS: dict[str, tuple[Any, str]] = {  # cell -> (content, why it is unreadable)
    "py3.9-torch2.9.0": ("[1, 2]", "not a JSON object but a list"),
    "py3.9-torch2.13.0": (passed_record("py3.9-torch2.13.0", status=42),
                          "'status' is not a status (it is a number (42))"),
    "py3.10-torch2.9.0": (passed_record("py3.10-torch2.9.0", axes=["3.10"]),
                          "'axes' is not an object of axis values (it is a list)"),
    "py3.10-torch2.13.0": (passed_record("py3.10-torch2.13.0", suites="unit"),
                           "'suites' is not an object of suites"),
    "py3.12-torch2.9.0": (passed_record("py3.12-torch2.9.0", durations={"build": "slow"}),
                          "'durations' is not an object of seconds (a value in it is not)"),
    "py3.12-torch2.13.0": (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not UTF-8 text"),
    "py3.13-torch2.9.0": ('{"schema": 1, "cell": "py3.13-torch2.9.0", "axes": {}, '
                          '"status": "passed", "durations": {"build": NaN}}',
                          "not JSON (NaN is not a JSON number)"),
    "py3.13-torch2.13.0": (passed_record("py3.13-torch2.13.0", schema=2),
                           "record schema 2, but this compatmatrix reads schema 1"),
}


def test_unreadable_records_are_missing_cells_that_say_why(evidence: Path) -> None:
    run = evidence / "run"
    for cell, (content, _) in BAD_RECORDS.items():
        write_record(run, cell, content)
    found = cells(report_json(evidence))
    for cell, (_, why) in BAD_RECORDS.items():
        assert found[cell]["status"] == "missing"
        assert found[cell]["reason"].startswith(f"results/{cell}.json is unreadable: {why}")
        assert found[cell]["reason"].endswith("run the cell again, or delete the file")


@pytest.mark.parametrize("kind", ["fifo", "folder", "huge"])
def test_a_record_that_is_not_a_file_never_blocks(evidence: Path, kind: str) -> None:
    path = evidence / "run" / "results" / "py3.11-torch2.9.0.json"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block until someone writes
    elif kind == "folder":
        path.mkdir()
    else:
        with path.open("wb") as handle:
            handle.truncate(50 * 1024 * 1024 * 1024)  # sparse, 50 GiB
    why = {"fifo": "a FIFO (named pipe), not a file", "folder": "a folder, not a file"}.get(
        kind, "larger than 16 MiB")
    cell = cells(report_json(evidence))["py3.11-torch2.9.0"]
    assert cell["status"] == "missing"
    assert cell["reason"].startswith(f"results/py3.11-torch2.9.0.json is unreadable: {why}")
    code, out, _ = cli("gate", "--matrix", str(evidence / "matrix.yaml"), "--from",
                       str(evidence / "run"))
    assert code == 1 and f"FAIL: py3.11-torch2.9.0: required cell is missing: {cell['reason']}" \
        in out


@pytest.mark.parametrize(("junit", "why"), [
    ("fifo", "JUnit file unreadable (a FIFO (named pipe), not a file)"),
    ("<html><body/></html>", "JUnit file unreadable (XML, but its root is neither "
                             "<testsuites> nor <testsuite>)"),
    (b"\x00\x01\x02binary\xff", "JUnit file unreadable ("),
    ("", "JUnit file is empty"),
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 '
     '"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><testsuites>&lol1;</testsuites>',
     "JUnit file unreadable (it declares a DOCTYPE or entities"),
    ("huge", "JUnit file unreadable (larger than 64 MiB)"),
    ("<testsuites><testsuite name='x'><testcase name='a'>", "JUnit file unreadable ("),
])
def test_a_junit_file_that_is_no_evidence_makes_the_suite_missing(
        evidence: Path, junit: str | bytes, why: str) -> None:
    run = evidence / "run"
    write_record(run, "py3.11-torch2.9.0", passed_record("py3.11-torch2.9.0"))
    path = run / "junit" / "py3.11-torch2.9.0" / "unit.xml"
    path.parent.mkdir(parents=True)
    if junit == "fifo":
        os.mkfifo(path)
    elif junit == "huge":
        with path.open("wb") as handle:
            handle.truncate(100 * 1024 * 1024 * 1024)
    elif isinstance(junit, bytes):
        path.write_bytes(junit)
    else:
        path.write_text(junit, encoding="utf-8")
    suite = cells(report_json(evidence))["py3.11-torch2.9.0"]["suites"][0]
    assert (suite["status"], suite["problems"][0][:len(why)]) == ("missing", why)
    merged = (evidence / "reports" / "junit.xml").read_text(encoding="utf-8")
    assert "py3.11-torch2.9.0/unit" in merged  # stood in for by a note case
    code, out, _ = cli("gate", "--matrix", str(evidence / "matrix.yaml"), "--from", str(run))
    assert code == 1 and "FAIL: py3.11-torch2.9.0: required cell is passed, but its test " \
        "evidence does not show it" in out


def test_a_collected_list_that_is_a_fifo_is_not_read(evidence: Path) -> None:
    run = evidence / "run"
    write_record(run, "py3.11-torch2.9.0", passed_record("py3.11-torch2.9.0"))
    path = run / "junit" / "py3.11-torch2.9.0" / "unit.xml"
    (path.parent / "unit.xml.state").mkdir(parents=True)
    path.write_text(JUNIT, encoding="utf-8")
    os.mkfifo(path.parent / "unit.xml.state" / "collected.txt")
    suite = cells(report_json(evidence))["py3.11-torch2.9.0"]["suites"][0]
    assert suite["status"] == "passed" and suite["passed"] == 1


BAD_BASELINES: dict[str, tuple[str, str]] = {  # name -> (content, why)
    "garbage": ("this is not json", "not JSON: Expecting value"),
    "list": ("[1, 2, 3]", "a list, not an object"),
    "schema": ('{"schema": 2, "axes": [], "cells": []}', "schema 2, expected 1"),
    "cells": ('{"schema": 1, "axes": [], "cells": {"a": 1}}', "'cells' is not a list"),
    "cell": ('{"schema": 1, "axes": [], "cells": [{"id": "a", "status": 3, "axes": {}}]}',
             "cells[0]: 'status' is not a string"),
    "durations": ('{"schema": 1, "axes": [], "cells": [{"id": "a", "status": "passed", '
                  '"axes": {}, "durations": {"build": 1e999}}]}', "not JSON: 1e999"),
    "nan": ('{"schema": 1, "axes": [], "cells": [], "commit": NaN}',
            "not JSON: NaN is not a JSON number"),
}


@pytest.mark.parametrize("name", [*BAD_BASELINES, "folder", "fifo"])
def test_a_baseline_that_is_not_a_report_is_exit_2(evidence: Path, name: str) -> None:
    write_record(evidence / "run", "py3.11-torch2.9.0", passed_record("py3.11-torch2.9.0"))
    baseline = evidence / "baseline.json"
    if name == "folder":
        baseline.mkdir()
        why = "a folder, not a file"
    elif name == "fifo":
        os.mkfifo(baseline)
        why = "a FIFO (named pipe), not a file"
    else:
        content, why = BAD_BASELINES[name]
        baseline.write_text(content, encoding="utf-8")
    code, _, err = cli("gate", "--matrix", str(evidence / "matrix.yaml"), "--from",
                       str(evidence / "run"), "--baseline", str(baseline))
    assert code == 2
    assert err.startswith(f"compatmatrix: {baseline}: not a readable compatibility report "
                          f"({why}"), err
    assert "point --baseline at a compatibility.json written by `compatmatrix report`" in err


def test_a_committed_baseline_that_is_garbage_is_exit_2(evidence: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    (evidence / "reports").mkdir()
    (evidence / "reports" / "compatibility.json").write_text("[]", encoding="utf-8")
    for args in (["init", "--quiet"], ["add", "reports"], ["commit", "--quiet", "-m", "r"]):
        subprocess.run(["git", *args], cwd=evidence, check=True, env=env, capture_output=True)
    code, _, err = cli("gate", "--matrix", str(evidence / "matrix.yaml"), "--from",
                       str(evidence / "run"))
    assert code == 2 and "compatibility.json at git HEAD: not a readable compatibility " \
        "report (a list, not an object)" in err


def test_publish_commits_a_report_that_says_which_records_are_unreadable(
        tmp_path: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}

    def git(cwd: Path, *args: str) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True, env=env, capture_output=True)

    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", "remote.git")
    git(tmp_path, "clone", "--quiet", "remote.git", "repo")
    repo = tmp_path / "repo"
    make_package(repo / "pkg")
    (repo / "matrix.yaml").write_text(EVIDENCE_MATRIX, encoding="utf-8")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "start")
    git(repo, "push", "--quiet", "origin", "HEAD:main")
    (tmp_path / "run" / "results").mkdir(parents=True)
    os.mkfifo(tmp_path / "run" / "results" / "py3.11-torch2.9.0.json")
    write_record(tmp_path / "run", "py3.9-torch2.9.0", "{")
    code, out, err = cli("publish", "--matrix", str(repo / "matrix.yaml"), "--from",
                         str(tmp_path / "run"), "--branch", "main")
    assert "committed and pushed to origin/main" in out
    assert code == 0, err
    found = cells(loads_strict((repo / "reports" / "compatibility.json").read_text()))
    assert found["py3.11-torch2.9.0"]["reason"].startswith(
        "results/py3.11-torch2.9.0.json is unreadable: a FIFO (named pipe), not a file")
    assert found["py3.9-torch2.9.0"]["reason"].startswith(
        "results/py3.9-torch2.9.0.json is unreadable: not JSON")


@pytest.mark.parametrize("command", ["report", "publish"])
@pytest.mark.parametrize("out", ["file", "/dev/null"])
def test_an_out_that_is_not_a_folder_is_exit_2(evidence: Path, command: str, out: str) -> None:
    target = Path(out) if out.startswith("/") else evidence / "a-file"
    if not target.exists():
        target.write_text("x", encoding="utf-8")
    code, _, err = cli(command, "--matrix", str(evidence / "matrix.yaml"), "--from",
                       str(evidence / "run"), "--out", str(target))
    assert code == 2 and f"the report folder {target} is not a folder" in err


@pytest.mark.parametrize("command", ["run", "report", "gate"])
def test_a_workdir_that_is_a_file_is_exit_2(evidence: Path, command: str) -> None:
    target = evidence / "a-file"
    target.write_text("x", encoding="utf-8")
    code, _, err = cli(command, "--matrix", str(evidence / "matrix.yaml"), "--workdir",
                       str(target))
    assert code == 2 and f"the work directory {target} is not a folder" in err


def test_from_a_file_is_exit_2(evidence: Path) -> None:
    target = evidence / "a-file"
    target.write_text("x", encoding="utf-8")
    code, _, err = cli("report", "--matrix", str(evidence / "matrix.yaml"), "--from",
                       str(target))
    assert code == 2 and f"{target}: not a folder" in err


# --- strict JSON ------------------------------------------------------------------------


def test_a_nan_duration_is_written_as_null_and_read_back_without_it(evidence: Path) -> None:
    record = CellRecord("py3.11-torch2.9.0", {"python": "3.11", "torch": "2.9.0"},
                        Status.PASSED, durations={"build": math.nan, "resolve": math.inf,
                                                  "audit": 1.23456})
    path = evidence / "run" / "results" / "py3.11-torch2.9.0.json"
    record.write(path)
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert loads_strict(text)["durations"] == {"audit": 1.235, "build": None, "resolve": None}
    back = read_record(path)
    assert back is not None and back.durations == {"audit": 1.235}
    cell = cells(report_json(evidence))["py3.11-torch2.9.0"]
    assert cell["durations"] == {"audit": 1.2}


def test_a_report_with_a_nan_duration_is_written_without_it(tmp_path: Path) -> None:
    cell = CellReport(id="py3.11", axes={"python": "3.11"}, status="failed", stage="build",
                      reason="x", details=(), reproduce="r", build_key="k", resolved={},
                      suites=(), durations={"build": math.nan}, wheel_reused=False,
                      built_with_torch=None, running_torch=None)
    write_report(Report(1, None, ("python",), (cell,)), tmp_path)
    text = (tmp_path / "compatibility.json").read_text(encoding="utf-8")
    assert "NaN" not in text and loads_strict(text)["cells"][0]["durations"] == {"build": None}


def test_strict_json_never_writes_nan() -> None:
    assert dumps_strict({"a": [math.nan, -math.inf, 1.5]}) == '{"a": [null, null, 1.5]}'
    with pytest.raises(ValueError, match="NaN is not a JSON number"):
        loads_strict('{"a": NaN}')
    with pytest.raises(ValueError, match="nested too deeply"):
        loads_strict("[" * 100_000)


def test_plan_json_is_strict(folder: Path) -> None:
    (folder / "matrix.yaml").write_text(BASE, encoding="utf-8")
    code, out, _ = cli("plan", "--json", "--matrix", str(folder / "matrix.yaml"))
    assert code == 0 and loads_strict(out)[0]["id"] == "py3.11"


# --- subprocesses -----------------------------------------------------------------------


@pytest.fixture
def detached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A file where detached children write their pids; they are killed afterwards."""
    monkeypatch.setattr(_cmd, "DRAIN_SECONDS", 1.0)
    pids = tmp_path / "pids"
    yield pids
    for line in (pids.read_text().split() if pids.exists() else []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line), signal.SIGKILL)


def detach(pids: Path) -> str:
    """Shell words that start a child in its own session, holding the output open."""
    return f"setsid sh -c 'echo $$ >> {shlex.quote(str(pids))}; exec sleep 1000' &"


@pytest.mark.parametrize("timeout", [None, 60])
def test_a_detached_child_holding_the_output_does_not_hang_run(detached: Path,
                                                              timeout: float | None) -> None:
    with within(6):
        done = _cmd.run(["sh", "-c", f"echo hi; {detach(detached)} echo started"],
                        timeout=timeout)
    assert done.returncode == 0 and not done.timed_out
    assert done.output.startswith("hi\nstarted\n")
    assert "stopped reading output 1 s after the process ended" in done.output
    assert detached.read_text().strip()  # the child did start, and is still running


def test_a_timeout_with_a_detached_child_returns(detached: Path) -> None:
    with within(8):
        done = _cmd.run(["sh", "-c", f"echo hi; {detach(detached)} sleep 1000"], timeout=1)
    assert done.timed_out and done.returncode == -signal.SIGKILL
    assert "timed out after 1 s; process group killed" in done.output


def test_a_background_child_in_the_group_is_killed_after_the_drain(tmp_path: Path,
                                                                   detached: Path) -> None:
    pid = tmp_path / "pid"
    with within(6):
        done = _cmd.run(["sh", "-c", f"sleep 1000 & echo $! > {pid}; echo bye"], timeout=None)
    assert done.ok and done.output.startswith("bye\n")
    time.sleep(0.2)
    stat = Path(f"/proc/{int(pid.read_text())}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"  # killed (a zombie here)


def test_input_and_large_output_still_work() -> None:
    done = _cmd.run(["sh", "-c", "cat; head -c 3000000 /dev/zero | tr '\\0' x"], timeout=60,
                    input_text="abc" * 100_000)
    assert done.ok and done.output.startswith("abc" * 100_000)
    assert done.output.count("x") == 3_000_000


def test_an_argument_with_a_nul_is_a_failed_command_not_an_exception() -> None:
    done = _cmd.run(["echo", "a\0b"], timeout=10)
    assert done.returncode == 127 and "cannot run echo" in done.output


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return path


def test_doctor_on_an_interpreter_whose_child_keeps_the_pipe_open(
        tmp_path: Path, detached: Path) -> None:
    python = script(tmp_path / "python", f"{detach(detached)}\necho hello\n")
    code, _, err = cli("doctor", "--python", str(python))
    assert code == 2 and f"cannot inspect {python}: it exited with 0" in err
    assert "a process it started in the background keeps the output open" in err


def test_doctor_on_a_hanging_interpreter_with_a_detached_child(
        tmp_path: Path, detached: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_doctor_env, "PROBE_TIMEOUT", 2.0)
    python = script(tmp_path / "python", f"{detach(detached)}\nexec sleep 1000\n")
    code, _, err = cli("doctor", "--python", str(python))
    assert code == 2 and f"cannot inspect {python}: it did not answer within 2 s" in err


@pytest.mark.parametrize(("line", "why"), [
    ('COMPATMATRIX-PROBE {"executable": oops', "its answer is not a JSON object (a forged"),
    ("COMPATMATRIX-PROBE [1, 2]", "its answer is not a JSON object (a forged"),
    ('COMPATMATRIX-PROBE {"executable": "/x", "site": 5}',
     "its answer is not what the probe prints (wrong or missing prefix"),
    ('COMPATMATRIX-PROBE {"executable": "/x", "prefix": "/", "version": "3.11.0", '
     '"implementation": "CPython", "site": ["/a\\u0000b"], "markers": {}, '
     '"extension_suffixes": [], "pip": true}',
     "its answer is not what the probe prints (wrong or missing site;"),
])
@pytest.mark.parametrize("as_json", [False, True])
def test_doctor_on_an_interpreter_that_forges_the_probe(tmp_path: Path, line: str, why: str,
                                                        as_json: bool) -> None:
    python = script(tmp_path / "python", f"echo {shlex.quote(line)}\n")
    code, out, err = cli("doctor", "--python", str(python), *(["--json"] if as_json else []))
    assert code == 2 and f"cannot inspect {python}: {why}" in err
    if as_json:
        answer = loads_strict(out)
        assert answer["status"] == "cannot-inspect" and why in answer["error"]


def fake_environment(python: Path) -> Environment:
    return Environment(python=python, version="3.11.0", implementation="CPython", prefix="/",
                       site=(), markers={}, extension_suffixes=(".so",),
                       installer=Installer((str(python), "-m", "pip", "install")))


@pytest.mark.parametrize("line", [
    "COMPATMATRIX-DOCTOR {not json",
    'COMPATMATRIX-DOCTOR {"torch": {"version": 2}}',
    'COMPATMATRIX-DOCTOR {"module": "torch._dynamo"}',
    'COMPATMATRIX-DOCTOR {"cuda_available": "yes"}',
    "COMPATMATRIX-DOCTOR [1]",
])
def test_the_torch_check_refuses_forged_lines(tmp_path: Path, line: str) -> None:
    python = script(tmp_path / "python", f"echo {shlex.quote(line)}\n")
    with pytest.raises(CannotInspect, match="the torch check's answer is not what it prints"):
        torch_facts(fake_environment(python), os.environ, timeout=30)


@pytest.mark.parametrize("line", [
    "COMPATMATRIX-LOAD {oops",
    'COMPATMATRIX-LOAD {"start": "/not/one/of/them.so"}',
    'COMPATMATRIX-LOAD {"done": "/x/a.so", "error": 5}',
])
def test_the_extension_loader_refuses_forged_lines(tmp_path: Path, line: str) -> None:
    python = script(tmp_path / "python", f"cat > /dev/null; echo {shlex.quote(line)}\n")
    extension = Extension(Path("/x/a.so"), "a.so", "a", None)
    with pytest.raises(CannotInspect, match="the extension loader's answer is not what"):
        load_extensions(fake_environment(python), [extension], os.environ, timeout=30)


def identity_of(tmp_path: Path, facts: str, imported: str) -> tuple[bool, tuple[str, ...]]:
    """check_identity with a venv 'python' that prints these two lines."""
    python = script(tmp_path / "python", f'case "$5" in\n  *COMPATMATRIX-FACTS*) echo '
                    f'{shlex.quote(facts)};;\n  *) echo {shlex.quote(imported)};;\nesac\n')
    result = check_identity(python, cell_axes={"python": "3.11"}, package_axes=[],
                            import_name="pkg", build_torch_attr=None, wheel_torch=None,
                            log=tmp_path / "identity.log", timeout=30, venv=tmp_path,
                            cwd=tmp_path)
    return result.ok, result.mismatches


GOOD_FACTS = 'COMPATMATRIX-FACTS {"python": "3.11.7", "packages": {}, "prefix": "/v"}'
GOOD_IMPORT = 'COMPATMATRIX-IMPORT {"build_torch": null, "module_file": null}'


@pytest.mark.parametrize(("facts", "imported", "why"), [
    ("COMPATMATRIX-FACTS {oops", GOOD_IMPORT, "could not inspect the venv: its answer is not "
                                              "valid JSON"),
    ("COMPATMATRIX-FACTS [1]", GOOD_IMPORT, "could not inspect the venv: its answer is not "
                                            "valid JSON"),
    ('COMPATMATRIX-FACTS {"python": 3, "packages": []}', GOOD_IMPORT,
     "could not inspect the venv: its answer has the wrong type for packages, python"),
    (GOOD_FACTS, "COMPATMATRIX-IMPORT {oops", "the import check's answer is not what it "
                                              "prints"),
    (GOOD_FACTS, 'COMPATMATRIX-IMPORT {"build_torch": {}, "module_file": 5}',
     "the import check's answer is not what it prints"),
    (GOOD_FACTS, 'COMPATMATRIX-IMPORTED-TORCH {"torch": {"version": 5}}\n' + GOOD_IMPORT,
     "the import check's answer about torch is not what it prints"),
    (GOOD_FACTS, "COMPATMATRIX-IMPORTED-TORCH {oops\n" + GOOD_IMPORT,
     "the import check's answer about torch is not what it prints"),
])
def test_a_forged_identity_line_fails_the_identity(tmp_path: Path, facts: str, imported: str,
                                                   why: str) -> None:
    ok, mismatches = identity_of(tmp_path, facts, imported)
    assert not ok and any(m.startswith(why) for m in mismatches), mismatches


def test_an_honest_identity_line_passes(tmp_path: Path) -> None:
    assert identity_of(tmp_path, GOOD_FACTS, GOOD_IMPORT) == (True, ())


def test_forged_build_and_toolchain_output_is_no_answer(tmp_path: Path) -> None:
    python = script(tmp_path / "python", "echo 'COMPATMATRIX-TORCH {\"version\": [1]}'\n"
                                         "echo 'COMPATMATRIX-TORCH {oops'\n")
    assert read_torch_facts(python).version is None
    assert parse_include_dirs('#$ INCLUDES="-I/usr/include\n#$ SYSTEM_INCLUDES=-isystem "x') \
        == ()


def test_forged_nvidia_smi_output_is_no_gpu(tmp_path: Path) -> None:
    script(tmp_path / "nvidia-smi", "exit 0\n")

    def fake(argv: Any, **_: Any) -> _cmd.CommandResult:
        return _cmd.CommandResult(tuple(argv), 0, "0, GPU-1, \u00b2.0, H100\n", 0.1)

    found = gpu_capabilities({"PATH": str(tmp_path)}, run=fake)
    assert list(found) == [("H100", "\u00b2.0")]  # listed as nvidia-smi says, but never a 9.x
    assert kind_problem("h100", found) is not None
