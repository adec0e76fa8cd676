"""Run one suite of a cell with pytest, and say honestly whether it passed.

pytest's exit code and the JUnit summary attributes can both claim success when tests never
ran: a crashed xdist worker, an ``os._exit`` or a segfault in a test, a hang. So the runner
loads a small plugin (:mod:`compatmatrix._pytest_plugin`) that records what was collected
and which tests started, counts the JUnit test cases itself, and fails the suite unless
every collected test is accounted for.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from compatmatrix._text import plural
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.cmd import error_lines
from compatmatrix.host.paths import import_outside
from compatmatrix.model.junit import (
    JUnitCase,
    JUnitProblem,
    junit_key,
    read_junit,
    write_not_run_junit,
)
from compatmatrix.model.outcomes import SuiteResult, SuiteStatus
from compatmatrix.model.spec import Suite

__all__ = ["PLUGIN_SOURCE", "pytest_command", "run_suite"]

MAX_FIRST_ERRORS = 5
PLUGIN_MODULE = "_compatmatrix_pytest"  # a name no project uses, unlike "compatmatrix"
# compatmatrix's pytest plugin, copied into each suite's state folder under PLUGIN_MODULE
PLUGIN_SOURCE = Path(__file__).resolve().parent.parent / "_pytest_plugin.py"
_EXIT_MEANINGS = {2: "interrupted, e.g. a collection error", 3: "internal error",
                  4: "usage error"}
# Written by the plugin; it cannot import this module (compatmatrix is not in the cell).
_COLLECTED, _PROGRESS, _IMPORTED = "collected.txt", "progress.txt", "imported-"
_DESELECTED = "deselected-"
_LOCATION_LINE = re.compile(r"^\S+:\d+: ([A-Za-z_][\w.]*)$")




# --- running -----------------------------------------------------------------------------


def pytest_command(suite: Suite, *, python: Path, cell_id: str, root: Path, junit: Path,
                   state: Path, workers: int, import_name: str | None = None) -> list[str]:
    """The argv of the suite's pytest; run it from ``root`` with the plugin on PYTHONPATH."""
    argv = [str(python), "-m", "pytest", *suite.paths,
            "-o", f"junit_suite_name={cell_id}", f"--junitxml={junit}",
            "-p", "no:cacheprovider", "-rfEs",
            f"--rootdir={root}",
            # Never put the project's folders first on sys.path: the installed wheel is the
            # thing under test, not a source tree that happens to sit next to the tests.
            "--import-mode=importlib",
            "-p", PLUGIN_MODULE, f"--compatmatrix-state={state}"]
    if import_name:
        argv.append(f"--compatmatrix-import={import_name}")
    if suite.workers != "1" and workers > 1:
        # One replacement per worker: a crashing test does not take the rest of the suite
        # with it, and a systematic crash does not restart workers for minutes.
        argv += ["-n", str(workers), f"--max-worker-restart={workers}"]
    return [*argv, *suite.args]


def run_suite(suite: Suite, *, python: Path, cell_id: str, root: Path, junit: Path, log: Path,
              workers: int, timeout: float | None, gpu_problem: str | None,
              env: Mapping[str, str], venv: Path | None = None,
              import_name: str | None = None) -> SuiteResult:
    """Run ``suite`` from ``root`` (tests open files relative to it) with the venv's Python.

    With ``venv`` and ``import_name``, every pytest process records where it imported the
    package under test from, and an import from anywhere but ``venv`` (the source tree next
    to the tests) fails the suite.
    """
    # Absolute, since pytest runs in ``root``; a venv's python must not be resolved (the
    # symlink's target is the base interpreter, outside the venv).
    python, root, junit = Path(os.path.abspath(python)), root.resolve(), junit.resolve()
    state = junit.with_name(junit.name + ".state")
    argv = pytest_command(suite, python=python, cell_id=cell_id, root=root, junit=junit,
                          state=state, workers=workers, import_name=import_name)
    pythonpath = os.pathsep.join(filter(None, [str(state / "plugin"), env.get("PYTHONPATH")]))
    command = (f"cd {shlex.quote(str(root))} && PYTHONPATH={shlex.quote(pythonpath)} "
               + shlex.join(argv))
    if gpu_problem is not None:
        return _not_run(suite, cell_id, junit, log, command, gpu_problem)
    _prepare(junit, state)
    limit = suite.timeout if suite.timeout is not None else timeout
    done = _cmd.run(argv, log=log, cwd=root, env={**env, "PYTHONPATH": pythonpath},
                    timeout=limit)
    evidence = _gather(done, junit, state)
    status, reason = _verdict(evidence, limit)
    imported = _imported_from(state)
    outside = [o for o in (import_outside(import_name, p, venv) for p in imported
                           if venv is not None and import_name) if o]
    if outside:
        status, reason = SuiteStatus.FAILED, "; ".join(filter(None, [outside[0], reason]))
    counts = _counts(evidence)
    return SuiteResult(
        name=suite.name, status=status, reason=reason, collected=evidence.collected_count,
        passed=counts["passed"], failed=counts["failed"], errors=counts["error"],
        skipped=counts["skipped"], duration=done.duration,
        junit=str(junit) if junit.is_file() else None, log=str(log), command=command,
        first_errors=(tuple(outside) + _first_errors(evidence))[:MAX_FIRST_ERRORS]
        if status is SuiteStatus.FAILED else (),
        imported_from=imported,
    )


def _imported_from(state: Path) -> tuple[str, ...]:
    found = set()
    for path in state.glob(f"{_IMPORTED}*.txt"):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            found.add(text)
    return tuple(sorted(found))


def _not_run(suite: Suite, cell_id: str, junit: Path, log: Path, command: str,
             reason: str) -> SuiteResult:
    write_not_run_junit(junit, cell_id, suite.name, reason)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"[compatmatrix] suite {suite.name} not run: {reason}\n")
    return SuiteResult(suite.name, SuiteStatus.NOT_RUN, reason, 0, 0, 0, 0, 0, 0.0, str(junit),
                       str(log), command)


def _prepare(junit: Path, state: Path) -> None:
    """Remove what an earlier run left, so that a stale JUnit file is never read as this one."""
    junit.unlink(missing_ok=True)
    shutil.rmtree(state, ignore_errors=True)
    (state / "plugin").mkdir(parents=True)
    plugin = PLUGIN_SOURCE
    shutil.copyfile(plugin, state / "plugin" / f"{PLUGIN_MODULE}.py")


# --- judging -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Evidence:
    done: _cmd.CommandResult
    cases: tuple[JUnitCase, ...] | None  # None: no usable JUnit
    junit_problem: str
    collected: tuple[str, ...] | None  # node ids; None: the plugin recorded no collection
    unfinished: tuple[str, ...]  # started, never finished
    deselected: int = 0  # tests collected and then deselected (-m, -k)

    @property
    def collected_count(self) -> int:
        if self.collected is not None:
            return len(set(map(junit_key, self.collected)))
        return len(self.cases or ())

    def not_reported(self) -> list[str]:
        """Collected node ids that have no test case in the JUnit file."""
        if self.collected is None or self.cases is None:
            return []
        reported = {case.key for case in self.cases}
        missing = {junit_key(n): n for n in self.collected if junit_key(n) not in reported}
        return list(missing.values())


def _gather(done: _cmd.CommandResult, junit: Path, state: Path) -> _Evidence:
    try:
        cases: tuple[JUnitCase, ...] | None = read_junit(junit)
        problem = ""
    except JUnitProblem as exc:
        cases, problem = None, str(exc)
    collected_file = state / _COLLECTED
    collected = (tuple(collected_file.read_text(encoding="utf-8").splitlines())
                 if collected_file.is_file() else None)
    return _Evidence(done, cases, problem, collected, _unfinished(state / _PROGRESS),
                     _deselected(state))


def _deselected(state: Path) -> int:
    counts = []
    for path in state.glob(f"{_DESELECTED}*.txt"):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        counts.append(int(text) if text.isdigit() else 0)
    return max(counts, default=0)  # each xdist worker deselects the same tests


def _unfinished(progress: Path) -> tuple[str, ...]:
    if not progress.is_file():
        return ()
    running: dict[str, None] = {}
    for line in progress.read_text(encoding="utf-8", errors="replace").splitlines():
        event, _, nodeid = line.partition("\t")
        if event == "start":
            running[nodeid] = None
        else:
            running.pop(nodeid, None)
    return tuple(running)


def _verdict(evidence: _Evidence, limit: float | None) -> tuple[SuiteStatus, str]:
    deselected = evidence.deselected
    if evidence.done.returncode == 5 and deselected:
        # collected, then every test deselected (-m, -k in the suite's args): nothing ran
        return SuiteStatus.NOT_RUN, f"all {plural(deselected, 'test')} deselected"
    problems = _process_problems(evidence.done, limit)
    if evidence.done.timed_out:
        return SuiteStatus.FAILED, problems[0]  # nothing after a kill is worth a second clause
    if evidence.cases is None:
        exited = "" if problems else f" (pytest exited {evidence.done.returncode})"
        problems.append(evidence.junit_problem + exited)
    else:
        problems += _count_problems(evidence)
    if problems:
        return SuiteStatus.FAILED, "; ".join(problems)
    cases = evidence.cases or ()
    if cases and all(case.outcome == "skipped" for case in cases):
        # a suite whose every test skipped proves nothing: it is not passed
        why = sorted({case.message for case in cases if case.message})
        shown = "; ".join(why[:3]) + (f"; and {len(why) - 3} other reasons" if len(why) > 3
                                      else "")
        return SuiteStatus.NOT_RUN, (f"all {plural(len(cases), 'test')} skipped"
                           + (f": {shown}" if shown else ""))
    return SuiteStatus.PASSED, ""


def _process_problems(done: _cmd.CommandResult, limit: float | None) -> list[str]:
    code = done.returncode
    if done.timed_out:
        return [f"timed out after {limit:g} s"]
    if code < 0:
        return [f"pytest was killed by signal {_signal_name(-code)}"]
    if code == 5:
        return ["no tests collected"]
    if code in _EXIT_MEANINGS:
        return [f"pytest exited {code} ({_EXIT_MEANINGS[code]})"]
    if code not in (0, 1):
        return [f"pytest exited {code}"]
    return []


def _count_problems(evidence: _Evidence) -> list[str]:
    cases = evidence.cases or ()
    failed = sum(case.outcome == "failed" for case in cases)
    errors = sum(case.outcome == "error" for case in cases)
    problems = []
    if failed or errors:
        parts = [f"{failed} failed"] * bool(failed) + [plural(errors, "error")] * bool(errors)
        problems.append(f"{', '.join(parts)} of {plural(len(cases), 'test')}")
    missing = evidence.not_reported()
    if missing:
        problems.append(f"{len(missing)} of {evidence.collected_count} collected tests did "
                        "not run (a worker crashed, a test ended the process, or -x)")
    if evidence.collected is None and evidence.done.returncode != 5:
        problems.append("the plugin recorded no collection; cannot check that every test ran")
    if evidence.done.returncode == 1 and not problems:
        problems.append("pytest exited 1 but the JUnit file records no failure")
    return problems



def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _counts(evidence: _Evidence) -> dict[str, int]:
    counts = dict.fromkeys(("passed", "failed", "error", "skipped"), 0)
    for case in evidence.cases or ():
        counts[case.outcome] += 1
    return counts


def _first_errors(evidence: _Evidence) -> tuple[str, ...]:
    nodeids = {junit_key(n): n for n in evidence.collected or ()}
    lines = [f"{_display(case.key, nodeids)}: {case.message}" for case in evidence.cases or ()
             if case.outcome in ("failed", "error")]
    reported = {case.key for case in evidence.cases or ()}
    why = ("still running when the suite timed out" if evidence.done.timed_out
           else "started but never finished (the process died?)")
    lines += [f"{n}: {why}" for n in evidence.unfinished if junit_key(n) not in reported]
    if not lines:  # nothing better: the end of pytest's output (a usage error, a crash)
        lines = list(error_lines(evidence.done.output, MAX_FIRST_ERRORS, last=True))
    return tuple(lines[:MAX_FIRST_ERRORS])


def _display(key: tuple[str, str], nodeids: Mapping[tuple[str, str], str]) -> str:
    classname, name = key
    return nodeids.get(key) or (f"{classname}::{name}" if classname else name)
