"""The ``compatmatrix`` command line. Errors are caught once, here, and printed for people."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from compatmatrix import __version__
from compatmatrix._text import format_table
from compatmatrix.ci.pipelines import (
    GITHUB_MATRIX_LIMIT,
    buildkite_steps,
    github_matrix,
    pipeline_files,
    stale_pipelines,
    write_pipelines,
)
from compatmatrix.errors import CompatError, UsageError
from compatmatrix.host.interpreters import InterpreterFinder
from compatmatrix.host.safeio import dumps_strict
from compatmatrix.model.config import default_matrix
from compatmatrix.model.outcomes import Stage
from compatmatrix.model.plan import Cell, plan_cells
from compatmatrix.model.project import read_project
from compatmatrix.model.record import CellRecord, Status
from compatmatrix.model.spec import NONE, Matrix, load_matrix, with_release, with_wheels
from compatmatrix.model.workdir import WorkDir, report_dir, work_dir
from compatmatrix.report.collect import collect
from compatmatrix.report.gate import evaluate
from compatmatrix.report.model import Report, load_report, parse_report
from compatmatrix.report.pins import write_pins
from compatmatrix.report.publish import committed_file, current_branch, git_toplevel, publish
from compatmatrix.report.write import write_report
from compatmatrix.run.progress import make_progress
from compatmatrix.run.scheduler import make_context, run_cells, select_cells

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "matrix", False) is None:  # --matrix not given: what the project says
            args.matrix = default_matrix(Path("."))
        result: int = args.handler(args)
        return result
    except CompatError as error:
        print(f"compatmatrix: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("compatmatrix: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compatmatrix",
        description="Which Python x torch x CUDA x vLLM x extras combinations really work.",
    )
    parser.add_argument("--version", action="version", version=f"compatmatrix {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)

    plan = commands.add_parser(
        "plan", help="print the cells of the matrix",
        description="Print the cells of the matrix: id, axis values, build key and the "
                    "interpreter each cell will use.")
    _add_matrix_option(plan)
    form = plan.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true",
                      help="a JSON array, one object per cell (id, axes, build_key, interpreter)")
    form.add_argument("--github-matrix", action="store_true",
                      help="one line of JSON for a GitHub Actions strategy.matrix (fromJSON): "
                           "each cell with its Python and runner labels")
    form.add_argument("--buildkite", action="store_true",
                      help="Buildkite steps for 'buildkite-agent pipeline upload': one step per "
                           "cell on its queue, then report and gate")
    plan.add_argument("--part", type=_part, default=None, metavar="I/N",
                      help="with --github-matrix: the I-th of N slices, for matrices beyond "
                           f"GitHub's {GITHUB_MATRIX_LIMIT} jobs per matrix")
    plan.add_argument("--wheels-artifact", default=None, metavar="NAME",
                      help="with --buildkite: the cells download NAME/*.whl (the build "
                           "step's artifacts) and test those wheels (run --wheels); report "
                           "and gate follow, nothing is published")
    plan.set_defaults(handler=_cmd_plan)

    ci = commands.add_parser(
        "ci", help="write the GitHub Actions and Buildkite pipelines (--check: are they stale?)",
        description="Write .github/workflows/compat-matrix.yml and .buildkite/pipeline.yml "
                    "beside matrix.yaml. With --check, write nothing and exit 1 when either "
                    "differs from what matrix.yaml generates now.")
    _add_matrix_option(ci)
    ci.add_argument("--check", action="store_true",
                    help="exit 1, naming the stale files, when they do not match matrix.yaml")
    ci.add_argument("--default-branch", default="main", metavar="BRANCH",
                    help="the branch whose pushes run the matrix and publish the report "
                         "(default: main)")
    ci.add_argument("--wheels-artifact", default=None, metavar="NAME",
                    help="also write the release flow: .github/workflows/compat-release.yml, "
                         "a reusable workflow (on: workflow_call) whose cells test the wheels "
                         "of the artifact NAME (input wheels-artifact) with run --wheels, "
                         "then report and gate; and .buildkite/release.yml, whose cells "
                         "download NAME/*.whl from the build step")
    ci.set_defaults(handler=_cmd_ci)

    run = commands.add_parser(
        "run", help="run cells end to end (resolve, build, audit, install, identity, suites)",
        description="Run cells end to end and write one record per cell to "
                    "WORKDIR/results/<cell id>.json. Exit 1 when a cell failed or errored "
                    "(with --exit-zero: only when one errored), 130 when interrupted.")
    _add_matrix_option(run)
    _add_workdir_option(run)
    run.add_argument("--cell", action="append", default=[], metavar="ID",
                     help="run only this cell (an id or a glob; repeatable)")
    run.add_argument("--select", action="append", default=[], metavar="AXIS=GLOB",
                     help="run only cells whose AXIS value matches GLOB, e.g. 'torch=2.13.*' "
                          "(repeatable: all must match)")
    run.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                     help="CPU budget: cells in parallel, and build and test workers shared "
                          "among them (default: number of cores)")
    run.add_argument("--force", action="store_true",
                     help="run every selected cell, even when its inputs did not change")
    run.add_argument("--until", choices=["resolve"], default=None,
                     help="stop every cell after resolve: 'resolvable' (the pins install "
                          "together; nothing built or tested), incompatible or unavailable; "
                          "records go to WORKDIR/pins/, reported by 'report --pins'")
    artifact = run.add_mutually_exclusive_group()
    artifact.add_argument("--wheels", type=Path, default=None, metavar="DIR",
                          help="test the wheels in DIR (built elsewhere: cibuildwheel, a "
                               "release job) instead of building: each cell tests the one "
                               "wheel that installs on its Python and platform, admits its "
                               "torch and names its variant; a cell with none fails at "
                               "'select' (overrides project.wheels)")
    artifact.add_argument("--requirement", default=None, metavar="NAME==VERSION",
                          help="test a published release: each cell resolves it with its "
                               "pins from the matrix's indexes and tests the wheel picked "
                               "for it; no source needed (overrides project.requirement)")
    run.add_argument("--fail-fast", action="store_true",
                     help="start no new cell after one fails or errors")
    run.add_argument("--exit-zero", action="store_true",
                     help="exit 0 when every cell has a record, whatever its status (the "
                          "gate judges); still 1 when a cell errored (a compatmatrix bug)")
    level = run.add_mutually_exclusive_group()
    level.add_argument("-q", "--quiet", action="store_const", const=0, dest="verbosity",
                       help="print only the final summary")
    level.add_argument("-v", "--verbose", action="store_const", const=2, dest="verbosity",
                       help="print a line for every stage of every cell")
    run.set_defaults(handler=_cmd_run, verbosity=1)

    report = commands.add_parser(
        "report", help="aggregate records and JUnit files into reports/",
        description="Aggregate the records and JUnit files of a local run (--workdir) or of CI "
                    "artifacts (--from DIR, repeatable) into compatibility.md, .json, .html "
                    "and junit.xml. Files are rewritten only when their bytes change.")
    _add_results_options(report)
    report.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where the report goes (default: $COMPATMATRIX_REPORTS, else "
                             "reports/ beside matrix.yaml)")
    report.add_argument("--pins", action="store_true",
                        help="the pins table of a resolve-only run (run --until resolve) into "
                             "pins.md and pins.json, never the compatibility report")
    report.add_argument("--commit", default=None, metavar="SHA",
                        help="write 'generated from commit SHA' into the report")
    report.set_defaults(handler=_cmd_report)

    gate = commands.add_parser(
        "gate", help="the release gate: exit 1 with reasons when it must not go ahead",
        description="Exit 0 when the release may go ahead; exit 1, one line per reason with "
                    "its reproduction command, when a required cell is not passed or a cell "
                    "that passed in the baseline now fails.")
    _add_results_options(gate)
    gate.add_argument("--baseline", type=Path, default=None, metavar="FILE",
                      help="a compatibility.json to compare with (default: the committed "
                           "reports/compatibility.json, as in git HEAD)")
    gate.add_argument("--today", type=_date, default=None, metavar="YYYY-MM-DD",
                      help="the date quarantine expiry is checked against (default: today)")
    gate.set_defaults(handler=_cmd_gate)

    publish = commands.add_parser(
        "publish", help="commit reports/ back to the branch (CI, default branch only)",
        description="Regenerate the report, commit only reports/ with a message saying what "
                    "changed (and [skip ci]), push; on a rejected push fetch, move to the "
                    "remote branch, regenerate and retry. Does nothing when the report did "
                    "not change.")
    _add_results_options(publish)
    publish.add_argument("--out", type=Path, default=None, metavar="DIR",
                         help="the report folder (default: reports/ beside matrix.yaml)")
    publish.add_argument("--remote", default="origin", help="git remote (default: origin)")
    publish.add_argument("--branch", default=None,
                         help="branch to push to (default: the current branch)")
    publish.add_argument("--retries", type=int, default=3,
                         help="how many times to retry a rejected push (default: 3)")
    publish.set_defaults(handler=_cmd_publish)

    doctor = commands.add_parser(
        "doctor", help="diagnose an installed environment (why does `import vllm` fail?)",
        description="Inspect the current environment, or the interpreter given with --python: "
                    "unmet requirements, torch and its CUDA/ABI, nvcc against torch's CUDA, "
                    "GPUs, compiled extensions that do not load under the installed torch, "
                    "extensions built for another Python. Each finding has a severity, an "
                    "explanation and a fix command. Exit 0 when nothing is an error (warnings "
                    "do not fail), 1 when something is, 2 when the interpreter cannot be "
                    "inspected.")
    doctor.add_argument("--python", type=Path, default=None, metavar="PATH",
                        help="the interpreter (or venv folder) to inspect (default: the one "
                             "running compatmatrix)")
    doctor.add_argument("--json", action="store_true",
                        help="print the report as JSON (sorted keys, sorted findings)")
    doctor.set_defaults(handler=_cmd_doctor)

    init = commands.add_parser(
        "init", help="write a commented matrix.yaml and noxfile.py for this project",
        description="Read the project (pyproject.toml, setup.cfg, setup.py; nothing is built "
                    "or imported) and write a commented matrix.yaml and a noxfile.py into its "
                    "root: the Pythons installed here that requires-python admits, the newest "
                    "torch the project admits and the one installed here, a CUDA variant when "
                    "there are CUDA sources, one suite per test folder. An existing file is "
                    "never overwritten: what would have been written is printed instead. A "
                    "project that uses tox (tox.ini, setup.cfg [tox:tox], [tool.tox], "
                    "tox.toml) gets the lines that give tox one environment per cell, to add "
                    "to that file (never edited); one that uses tox without a configuration "
                    "(tox in its development requirements or CI files) gets a tox.toml. Exit 0 "
                    "when a file was written or none "
                    "needed writing, 1 when every file it would write already exists (or only "
                    "lines to add are left), 2 when the project cannot be read.")
    init.add_argument("--path", type=Path, default=Path("."), metavar="DIR",
                      help="the project's root folder (default: the current directory)")
    init.add_argument("--tox", action="store_true",
                      help="also write a tox.toml when the project has no tox configuration "
                           "and shows no use of tox (with one, init prints the lines to add "
                           "to it)")
    init.set_defaults(handler=_cmd_init)
    return parser


def _cmd_doctor(args: argparse.Namespace) -> int:
    from compatmatrix.doctor.diagnose import (
        run_doctor,  # imported on use: no other command needs it
    )

    return run_doctor(args.python, args.json, os.environ)


def _cmd_init(args: argparse.Namespace) -> int:
    from compatmatrix.init import run_init  # imported on use: no other command needs it

    return run_init(args.path, env=os.environ, tox=args.tox)


def _add_workdir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                        help="the work directory: wheels, venvs, logs, JUnit and records "
                             "(default: $COMPATMATRIX_WORKDIR, else .compatmatrix/ beside "
                             "matrix.yaml)")


def _add_results_options(parser: argparse.ArgumentParser) -> None:
    _add_matrix_option(parser)
    _add_workdir_option(parser)
    parser.add_argument("--from", dest="sources", type=Path, action="append", default=[],
                        metavar="DIR", help="read these folders instead (CI artifacts: work "
                        "directories, or folders of them); repeatable")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _workdir(args: argparse.Namespace, matrix: Matrix) -> Path:
    return _folder(work_dir(matrix.root, os.environ, args.workdir), "the work directory",
                   "--workdir DIR or $COMPATMATRIX_WORKDIR")


def _report_dir(args: argparse.Namespace, matrix: Matrix) -> Path:
    return _folder(report_dir(matrix.root, os.environ, args.out), "the report folder",
                   "--out DIR or $COMPATMATRIX_REPORTS")


def _folder(path: Path, what: str, option: str) -> Path:
    """``path``, which must be a folder when it exists (a file, /dev/null, a FIFO is not)."""
    if os.path.lexists(path) and not path.is_dir():
        raise UsageError(f"{what} {path} is not a folder; give a folder ({option}), or "
                         "remove what is there")
    return path


def _write_report(report: Report, out: Path) -> list[Path]:
    try:
        return write_report(report, out)
    except OSError as exc:
        raise UsageError(f"cannot write the report into {out}: {exc.strerror or exc}") from None


def _sources(args: argparse.Namespace, matrix: Matrix) -> list[Path]:
    return list(args.sources) or [_workdir(args, matrix)]


def _cmd_report(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix.resolve())
    pins = bool(args.pins)
    report = collect(matrix, _sources(args, matrix), commit=args.commit,
                     records="pins" if pins else "results")
    out = _report_dir(args, matrix)
    changed = write_pins(report, out) if pins else _write_report(report, out)
    counts = ", ".join(f"{n} {status}" for status, n in report.counts().items() if n)
    print(f"{len(report.cells)} cells: {counts}")
    print(f"report in {_short_path(out)}: " + (", ".join(p.name for p in changed) + " changed"
                                               if changed else "unchanged"))
    return 0


def _cmd_gate(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix.resolve())
    current = collect(matrix, _sources(args, matrix))
    baseline, where = _baseline(args, matrix)
    result = evaluate(matrix.gate, current, baseline, args.today or dt.date.today())
    print(f"baseline: {where}")
    for verdict in result.notes:
        print(f"note: {verdict.line()}")
    for verdict in result.failures:
        print(f"FAIL: {verdict.line()}")
    print("gate: " + ("passed: the release may go ahead" if result.ok else
                      f"failed: {len(result.failures)} reason(s)"))
    return 0 if result.ok else 1


def _baseline(args: argparse.Namespace, matrix: Matrix) -> tuple[Report | None, str]:
    if args.baseline is not None:
        if not os.path.lexists(args.baseline):
            raise UsageError(f"--baseline {args.baseline}: no such file")
        return load_report(args.baseline), str(args.baseline)
    committed = matrix.root / "reports" / "compatibility.json"
    from_git = committed_file(committed)
    if from_git is not None:
        where = f"{_short_path(committed)} at git HEAD"
        return parse_report(from_git, where), where
    if committed.is_file():
        return load_report(committed), _short_path(committed)
    return None, "none (no committed report): only required cells are checked"


def _cmd_publish(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix.resolve())
    out = _folder((args.out or matrix.root / "reports").resolve(), "the report folder",
                  "--out DIR")
    repo = git_toplevel(matrix.root)
    branch = args.branch or current_branch(repo)
    sources = _sources(args, matrix)

    def regenerate() -> Report:
        report = collect(matrix, sources)
        _write_report(report, out)
        return report

    result = publish(repo=repo, out=out, regenerate=regenerate, remote=args.remote,
                     branch=branch, retries=args.retries, env=os.environ)
    print(result.message if not result.committed else
          f"committed and pushed to {args.remote}/{branch} "
          f"(attempt {result.attempts}): {result.message}")
    return 0


def _add_matrix_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matrix", type=Path, default=None, metavar="FILE",
                        help="the matrix file (default: [tool.compatmatrix] matrix in "
                             "./pyproject.toml, else ./matrix.yaml)")


def _finder(matrix: Matrix) -> InterpreterFinder:
    return InterpreterFinder(os.environ, dict(matrix.interpreters))


def _part(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N with 1 <= I <= N (e.g. 1/2)")
    return int(index), int(count)


def _cmd_plan(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix)
    if args.part is not None and not args.github_matrix:
        raise UsageError("--part goes with --github-matrix")
    if args.wheels_artifact is not None and not args.buildkite:
        raise UsageError("--wheels-artifact goes with --buildkite")
    if args.github_matrix:
        print(github_matrix(matrix, args.part))
        return 0
    if args.buildkite:
        print(buildkite_steps(matrix, args.wheels_artifact), end="")
        return 0
    cells = plan_cells(matrix)
    finder = _finder(matrix)
    if args.json:
        print(dumps_strict([_plan_json(cell, finder) for cell in cells], indent=2))
        return 0
    print(_plan_table(matrix, cells, finder))
    return 0


def _cmd_ci(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix.resolve())
    files = pipeline_files(matrix, args.default_branch, args.wheels_artifact)
    if args.check:
        stale = stale_pipelines(files)
        for path in stale:
            print(f"compatmatrix: stale: {_short_path(path)} does not match "
                  f"{_short_path(matrix.path)}; run `nox -s ci` (or `compatmatrix ci`) and "
                  "commit the result", file=sys.stderr)
        if not stale:
            print("pipelines are up to date with " + _short_path(matrix.path))
        return 1 if stale else 0
    written = write_pipelines(files)
    for file in files:
        print(f"{_short_path(file.path)}: " + ("written" if file.path in written
                                               else "unchanged"))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix.resolve())
    if args.wheels is not None:
        matrix = with_wheels(matrix, args.wheels)
    elif args.requirement is not None:
        matrix = with_release(matrix, args.requirement)
    workdir = _workdir(args, matrix)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    ctx = make_context(matrix, workdir, os.environ, jobs=args.jobs, force=args.force,
                       reports=report_dir(matrix.root, os.environ),
                       until=Stage.RESOLVE if args.until == "resolve" else None)
    cells = select_cells(ctx.cells, args.cell, args.select)
    signal.signal(signal.SIGTERM, _interrupt)  # a cancelled CI job stops like Ctrl-C
    try:
        records = run_cells(ctx, cells, make_progress(args.verbosity),
                            fail_fast=args.fail_fast)
    except KeyboardInterrupt:
        kept = sum(ctx.workdir.record(c.id).is_file() for c in cells)
        print(f"compatmatrix: interrupted; {kept} of {len(cells)} cells have a record; "
              "run again to complete the rest", file=sys.stderr)
        return 130
    print()
    print(summary_table(records, ctx.workdir))
    print(_counts_line(records))
    judged = (Status.ERROR,) if args.exit_zero else (Status.FAILED, Status.ERROR)
    return 1 if any(r.status in judged for r in records) else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _counts_line(records: Sequence[CellRecord]) -> str:
    counts = {status: sum(r.status is status for r in records) for status in Status}
    reused = sum(r.reused for r in records)
    parts = [f"{n} {status.value}" for status, n in counts.items() if n]
    return f"{len(records)} cells: " + ", ".join(parts) + (f" ({reused} reused)" if reused
                                                           else "")


REASON_WIDTH = 60


def summary_table(records: Sequence[CellRecord], workdir: WorkDir) -> str:
    """The table, with reasons shortened to fit; below it, each shortened reason whole, so
    that no cause is lost to the cut."""
    rows, whole = [], []
    for r in records:
        reason = (r.reason.splitlines() or [""])[0]
        short = reason if len(reason) <= REASON_WIDTH else reason[:REASON_WIDTH - 1] + "…"
        if short != reason:
            whole.append(f"{r.cell}: {reason}")
        rows.append([r.cell, r.status.value + (" (reused)" if r.reused else ""), r.stage or "",
                     short, _short_path(workdir.logs(r.cell))])
    text = format_table(["cell", "status", "stage", "reason", "logs"], rows)
    return text + ("\n\n" + "\n".join(whole) if whole else "")


def _short_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _plan_json(cell: Cell, finder: InterpreterFinder) -> dict[str, object]:
    data = cell.to_json()
    interpreter = finder.find(cell.python)
    data["interpreter"] = (
        {"path": str(interpreter.path), "version": interpreter.full_version,
         "source": interpreter.source} if interpreter.path else None)
    if not interpreter.found:
        data["unavailable"] = interpreter.problem
    return data


def _plan_table(matrix: Matrix, cells: list[Cell], finder: InterpreterFinder) -> str:
    names = [axis.name for axis in matrix.axes]
    header = ["cell", *names, "build key", "interpreter"]
    rows = []
    for cell in cells:
        values = ["-" if v == NONE else v for _, v in cell.axes]
        rows.append([cell.id, *values, cell.build_key, finder.find(cell.python).describe()])
    text = format_table(header, rows)
    builds = len({cell.build_key for cell in cells})
    if matrix.project is not None and matrix.project.mode != "built":
        text += f"\n\n{len(cells)} cells, nothing built here"
    else:
        text += f"\n\n{len(cells)} cells, {builds} build keys"
    if matrix.project is None:
        text += "\nno project: a pins table (compatmatrix run --until resolve)"
    elif matrix.project.mode != "built":
        text += ("\nno build: each cell tests " + (
            f"the wheels of {', '.join(matrix.project.wheels)}"
            if matrix.project.mode == "given" else
            f"the published release {matrix.project.requirement}"))
    elif matrix.project.path is not None:
        project = read_project(matrix.project.path)
        text += ("\nproject metadata: " + (
            "pyproject.toml [project]" if project.meta is not None
            else f"from the build backend ({project.build_system.backend}), once per build "
                 f"key: {project.why_dynamic}"))
    missing = sorted({cell.python for cell in cells if not finder.find(cell.python).found})
    for version in missing:
        text += f"\nunavailable: Python {version}: {finder.find(version).problem}"
    return text
