"""compatmatrix (setup A) against a plain nox setup (setup B) on one matrix of kernels/.

Run by hand, never in CI (it takes many minutes and downloads torch builds):

    python bench/matrix.py [--cells small|full] [--keep DIR] [--save] [--no-prime]

Both setups get their own copy of kernels/ in one temporary folder (or DIR) and run the same
cells, one scenario after the other: cold (fresh work dir / .nox), a rerun with nothing
changed (plus B with ``nox -r``), a rerun after appending a comment to a unit-test file, and
one after appending a comment to a C++ file. Per run: wall time, CPU time of the child
processes, and the peak disk of the setup's own folder, sampled about once a second. The
package caches of uv and pip are shared and stay warm; they are primed, unmeasured, first.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
MARKER = ".bench-matrix"  # marks a --keep folder as ours, so a rerun may clear it
GIB = 1024**3
HEARTBEAT_S = 30.0

# PyPI's own torch builds: 2.9.0 is the CUDA 12.8 build, 2.13.0 the CUDA 13.0 build.
VARIANTS = {"2.9.0": "cu128", "2.13.0": "cu130"}
CELLS = {
    "small": (("3.11", "3.12"), ("2.13.0",)),
    "full": (("3.10", "3.11", "3.12"), ("2.9.0", "2.13.0")),
}
# Peak disk a run needs, mostly B's venvs (each holds a CUDA torch: about 4.7 GiB).
NEEDS_GIB = {"small": 20, "full": 45}
TEST_REQUIRES = ("pytest>=8", "pytest-xdist>=3", "numpy")
PRIME_REQUIRES = ("numpy", "pytest", "pytest-xdist", "setuptools", "wheel")


@dataclass(frozen=True)
class Grid:
    name: str
    pythons: tuple[str, ...]
    torches: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.pythons) * len(self.torches)

    def describe(self) -> str:
        torches = ", ".join(f"torch {t} {VARIANTS[t]}" for t in self.torches)
        return f"{self.name}: {self.size} cells, Python {', '.join(self.pythons)} x {torches}"


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def a(self) -> Path:
        return self.root / "A"

    @property
    def b(self) -> Path:
        return self.root / "B"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pythons(self) -> Path:
        return self.root / "pythons"


@dataclass(frozen=True)
class Edit:
    path: str  # relative to kernels/
    line: str


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    edit: Edit | None = None
    nox_reuse: bool = False  # B only; A's numbers are those of `same_as`
    same_as: str | None = None


SCENARIOS = (
    Scenario("cold", "fresh work dir / .nox; uv and pip caches warm"),
    Scenario("rerun", "nothing changed; plain `nox`, no -r"),
    Scenario("rerun -r", "nothing changed; B with `nox -r` (A: its rerun)",
             nox_reuse=True, same_as="rerun"),
    Scenario("test edit", "a comment appended to tests/unit/test_ops.py",
             Edit("tests/unit/test_ops.py", "# bench/matrix.py: a test-file edit")),
    Scenario("C++ edit", "a comment appended to csrc/ops.cpp",
             Edit("csrc/ops.cpp", "// bench/matrix.py: a C++ edit")),
)


@dataclass(frozen=True)
class DiskUsage:
    total: int  # allocated bytes of the folder's files, each inode once (like du)
    own: int    # less the inodes also linked from outside it (uv's cache hardlinks)


@dataclass(frozen=True)
class Measurement:
    setup: str
    scenario: str
    returncode: int
    ok: bool
    note: str
    wall_s: float
    cpu_s: float
    disk_peak: int
    disk_own_peak: int
    log: str


Results = dict[tuple[str, str], Measurement]  # (scenario, setup) -> its run


@dataclass(frozen=True)
class Setup:
    name: str  # "A" or "B"
    title: str
    folder: Path
    env: Mapping[str, str]
    command: Callable[[Scenario], list[str]]
    check: Callable[[int, Path], tuple[bool, str]]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    grid = Grid(args.cells, *CELLS[args.cells])
    load = os.getloadavg()[0]
    if load > 0.5:
        _progress(f"warning: load average {load:.1f} before starting: wall times will be noisy")
    with _root(args.keep) as root:
        results, sizes, prime_s = run_benchmark(Layout(root), grid, prime_first=not args.no_prime)
    kept = str(root) if args.keep else f"{root} (deleted; --keep DIR keeps it)"
    report = make_report(grid, results, sizes, prime_s, folder=kept, load=load)
    print()
    print(format_report(report))
    if args.save:
        print(f"saved {save(report)}")
    return 0 if all(m.ok for m in results.values()) else 1


def run_benchmark(layout: Layout, grid: Grid, *, prime_first: bool
                  ) -> tuple[Results, dict[str, dict[str, int]], dict[str, float]]:
    """The measured runs, the package caches' sizes (before, primed, after) and the seconds
    priming took."""
    free = shutil.disk_usage(layout.root).free / GIB
    if free < NEEDS_GIB[grid.name]:
        _progress(f"warning: {free:.0f} GiB free in {layout.root}; this run needs about "
                  f"{NEEDS_GIB[grid.name]} GiB")
    setups = prepare(layout, grid)
    caches = cache_dirs()
    sizes = {"before": cache_sizes(caches)}
    prime_s: dict[str, float] = {}
    if prime_first:
        prime_s = prime(layout, grid, setups)
        sizes["primed"] = cache_sizes(caches)
    results = run_scenarios(layout, setups)
    sizes["after"] = cache_sizes(caches)
    return results, sizes, prime_s


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="compatmatrix against a plain nox setup: wall, CPU and disk per scenario.")
    parser.add_argument("--cells", choices=sorted(CELLS), default="full",
                        help="small: 2 cells (py3.11, py3.12 x torch 2.13.0 cu130); "
                             "full: 6 cells (py3.10-3.12 x torch 2.9.0 cu128, 2.13.0 cu130)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR (new, or a previous --keep folder) and keep it")
    parser.add_argument("--save", action="store_true",
                        help="also write bench/results/matrix-<date>.json")
    parser.add_argument("--no-prime", action="store_true",
                        help="do not fill the uv and pip caches (unmeasured) before the runs")
    return parser


@contextmanager
def _root(keep: Path | None) -> Iterator[Path]:
    if keep is None:
        root = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
        try:
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    root = keep.resolve()
    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        sys.exit(f"bench/matrix.py: {root} is not empty and not a previous --keep folder")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / MARKER).touch()
    yield root


# --- the two setups -------------------------------------------------------------------------

def prepare(layout: Layout, grid: Grid) -> dict[str, Setup]:
    for folder in (layout.a, layout.b):
        _copy_kernels(folder / "kernels")
        (folder / "tmp").mkdir()
    layout.logs.mkdir()
    (layout.a / "matrix.yaml").write_text(matrix_yaml(grid))
    shutil.copy(REPO / "bench" / "plain_noxfile.py", layout.b / "noxfile.py")
    env_a = _env_a(layout)
    _python_links(layout.pythons, interpreters(layout, env_a))
    return {"A": _setup_a(layout, grid, env_a), "B": _setup_b(layout, grid)}


def _copy_kernels(dest: Path) -> None:
    skip = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                  "*.so", "*.o", "_build_info.py")
    shutil.copytree(REPO / "kernels", dest, ignore=skip)


def matrix_yaml(grid: Grid) -> str:
    variants = sorted({VARIANTS[t] for t in grid.torches})
    excludes = [f'  - {{torch: "{t}", cuda: {v}}}\n'
                for t in grid.torches for v in variants if v != VARIANTS[t]]
    return (
        "version: 1\n"
        "project:\n"
        "  path: kernels\n"
        "  import: compat_kernels\n"
        '  abi3: ">=2.6"\n'
        "  build_torch_attr: compat_kernels.__torch_build_version__\n"
        f"  test_requires: {json.dumps(list(TEST_REQUIRES))}\n"
        "axes:\n"
        f"  python: {json.dumps(list(grid.pythons))}\n"
        f"  torch: {json.dumps(list(grid.torches))}\n"
        f"  cuda: [{', '.join(variants)}]\n"
        + ("exclude:\n" + "".join(excludes) if excludes else "")
        + "indexes: {cu128: pypi, cu130: pypi, find_links: [pip-config]}\n"
        "suites:\n"
        "  import: {paths: [kernels/tests/import]}\n"
        "  unit: {paths: [kernels/tests/unit], workers: auto}\n"
    )


def _env_a(layout: Layout) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "TMPDIR": str(layout.a / "tmp")}


def _env_b(layout: Layout) -> dict[str, str]:
    # PyPI's torch builds, as A gets them: without pip's configured find-links (which hold a
    # torch 2.13.0+cpu wheel for cp311) or configured extra indexes.
    drop = {"PIP_FIND_LINKS", "PYTHONPATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PATH"] = os.pathsep.join([str(layout.pythons), env.get("PATH", "")])
    env["TMPDIR"] = str(layout.b / "tmp")
    return env


def interpreters(layout: Layout, env: Mapping[str, str]) -> dict[str, Path]:
    """The interpreter compatmatrix picks for each Python, so that B uses the same ones."""
    argv = [sys.executable, "-m", "compatmatrix", "plan", "--json",
            "--matrix", str(layout.a / "matrix.yaml")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench/matrix.py: compatmatrix plan failed:\n{done.stderr}")
    found: dict[str, Path] = {}
    for cell in json.loads(done.stdout):
        interpreter = cell["interpreter"]
        if interpreter is None or cell.get("unavailable"):
            sys.exit(f"bench/matrix.py: no interpreter for {cell['id']}: "
                     f"{cell.get('unavailable')}")
        path = interpreter["path"] if isinstance(interpreter, dict) else interpreter
        found[cell["axes"]["python"]] = Path(path)
    return found


def _python_links(folder: Path, found: Mapping[str, Path]) -> None:
    # pyenv's shims for pythonX.Y fail unless that version is selected; nox finds these.
    folder.mkdir()
    for version, path in found.items():
        (folder / f"python{version}").symlink_to(path)


def _setup_a(layout: Layout, grid: Grid, env: Mapping[str, str]) -> Setup:
    argv = [sys.executable, "-m", "compatmatrix", "run", "--matrix",
            str(layout.a / "matrix.yaml"), "--workdir", str(layout.a / "work"), "--jobs", "2"]
    return Setup("A", "compatmatrix", layout.a, env, lambda _: argv,
                 lambda rc, log: check_a(rc, layout.a / "work", grid.size))


def _setup_b(layout: Layout, grid: Grid) -> Setup:
    base = [sys.executable, "-m", "nox", "-f", str(layout.b / "noxfile.py"), "--no-color"]
    sessions = [] if grid.name == "full" else ["-s", *nox_sessions(grid)]

    def command(scenario: Scenario) -> list[str]:
        return [*base, *(["-r"] if scenario.nox_reuse else []), *sessions]

    return Setup("B", "plain nox", layout.b, _env_b(layout), command,
                 lambda rc, log: check_b(rc, log, layout.b / ".nox", grid.size))


def nox_sessions(grid: Grid) -> list[str]:
    return [f"tests-{p}(torch='{t}')" for p in grid.pythons for t in grid.torches]


# --- checks: a run that is not green is reported, not timed as if it were ------------------

def check_a(returncode: int, workdir: Path, expected: int) -> tuple[bool, str]:
    records = [json.loads(p.read_text()) for p in sorted(workdir.glob("results/*.json"))]
    statuses = [r.get("status") for r in records]
    passed = statuses.count("passed")
    reused = sum(bool(r.get("reused")) for r in records)
    torches = sorted({str(r["running_torch"]) for r in records if r.get("running_torch")})
    note = (f"{passed}/{expected} cells passed, {reused} reused, "
            f"torch {', '.join(torches)}")
    ok = returncode == 0 and passed == expected == len(records)
    bad = [f"{r.get('cell')}: {r.get('status')} at {r.get('stage') or '-'}: {r.get('reason')}"
           for r in records if r.get("status") != "passed"]
    return ok, note if ok else "; ".join([f"rc={returncode}", note, *bad])


_SESSION_OK = re.compile(r"Session \S+ was successful")


def check_b(returncode: int, log: Path, envdir: Path, expected: int) -> tuple[bool, str]:
    successful = len(_SESSION_OK.findall(log.read_text(errors="replace")))
    torches = sorted(set(installed_torches(envdir)))
    note = f"{successful}/{expected} sessions successful, torch {', '.join(torches)}"
    cpu_torch = any("+cpu" in t or "cuda None" in t for t in torches)
    ok = returncode == 0 and successful == expected and not cpu_torch
    return ok, note if ok else f"rc={returncode}; {note}"


def installed_torches(envdir: Path) -> Iterator[str]:
    """`2.13.0 (cuda 13.0)` for each venv, read from torch/version.py without importing."""
    for version_py in sorted(envdir.glob("*/lib/python*/site-packages/torch/version.py")):
        text = version_py.read_text()
        version = re.search(r"^__version__ = '([^']+)'", text, re.M)
        cuda = re.search(r"^cuda: Optional\[str\] = '?([^'\s]+)", text, re.M)
        yield f"{_group(version)} (cuda {_group(cuda)})"


def _group(match: re.Match[str] | None) -> str:
    return match.group(1) if match else "?"


# --- priming the shared package caches (not measured) -------------------------------------

def prime(layout: Layout, grid: Grid, setups: Mapping[str, Setup]) -> dict[str, float]:
    """Fill uv's cache (A) and pip's cache (B) with the cells' torch builds and test tools,
    so that the cold scenario measures a cold project, not a first-ever download.
    Returns the seconds each tool took."""
    scratch = layout.root / "prime"
    links = {p.name.removeprefix("python"): p for p in layout.pythons.iterdir()}
    took = {"uv": 0.0, "pip": 0.0}
    for python in grid.pythons:
        for torch in grid.torches:
            _progress(f"priming caches (not measured): Python {python}, torch {torch}")
            requires = [f"torch=={torch}", *PRIME_REQUIRES]
            took["uv"] += _timed(partial(_prime_uv, scratch / "uv", links[python], requires,
                                         setups["A"].env))
            took["pip"] += _timed(partial(_prime_pip, scratch / "pip", links[python], requires,
                                          setups["B"].env))
            shutil.rmtree(scratch)
    return took


def _timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _prime_uv(venv: Path, python: Path, requires: list[str], env: Mapping[str, str]) -> None:
    uv = _uv()
    _checked([uv, "venv", "--quiet", "--python", str(python), str(venv)], env)
    _checked([uv, "pip", "install", "--quiet", "--python", str(venv), *requires], env)


def _prime_pip(venv: Path, python: Path, requires: list[str], env: Mapping[str, str]) -> None:
    # pip from a virtualenv made like nox's, so it is the pip (and cache layout) B's
    # sessions use.
    _checked([sys.executable, "-m", "virtualenv", "--quiet", "-p", str(python), str(venv)], env)
    _checked([str(venv / "bin" / "python"), "-m", "pip", "download", "--quiet",
              "-d", str(venv / "downloads"), *requires], env)


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            sys.exit("bench/matrix.py: uv is not installed")
        return found


def _checked(argv: list[str], env: Mapping[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench/matrix.py: {' '.join(argv)} failed:\n{done.stdout}{done.stderr}")


def cache_dirs() -> dict[str, Path]:
    pip = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True,
                         text=True, check=False).stdout.strip()
    uv = subprocess.run([_uv(), "cache", "dir"], capture_output=True, text=True,
                        check=False).stdout.strip()
    return {name: Path(path) for name, path in (("uv", uv), ("pip", pip)) if path}


def cache_sizes(caches: Mapping[str, Path]) -> dict[str, int]:
    return {name: disk_usage(path).total for name, path in caches.items()}


# --- running and measuring ------------------------------------------------------------------

def run_scenarios(layout: Layout, setups: Mapping[str, Setup]) -> Results:
    results: Results = {}
    for number, scenario in enumerate(SCENARIOS, 1):
        _progress(f"scenario {number}/{len(SCENARIOS)} {scenario.name}: {scenario.what}")
        if scenario.edit is not None:
            for setup in setups.values():
                _append(setup.folder / "kernels" / scenario.edit.path, scenario.edit.line)
        for setup in setups.values():
            if setup.name == "A" and scenario.same_as is not None:
                continue
            measured = measure(setup, scenario, layout.logs)
            results[(scenario.name, setup.name)] = measured
            _progress(f"  {setup.name} {setup.title}: {_summary(measured)}")
    return results


def _append(path: Path, line: str) -> None:
    with path.open("a") as out:
        out.write(f"\n{line}\n")


def measure(setup: Setup, scenario: Scenario, logs: Path) -> Measurement:
    log = logs / f"{_slug(scenario.name)}-{setup.name}.log"
    argv = setup.command(scenario)
    _progress(f"  {setup.name} {setup.title}: {' '.join(argv[1:])}  (log {log})")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with DiskSampler(setup.folder) as disk, log.open("w") as out:
        returncode = _wait(argv, setup, out, log, disk, start)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ok, note = setup.check(returncode, log)
    if not ok:
        _progress(f"  {setup.name} FAILED: {note}\n{_tail(log, 15)}")
    return Measurement(setup.name, scenario.name, returncode, ok, note, wall, cpu,
                       disk.peak.total, disk.peak.own, str(log))


def _wait(argv: list[str], setup: Setup, out: IO[str], log: Path, disk: DiskSampler,
          start: float) -> int:
    process = subprocess.Popen(argv, cwd=setup.folder, env=dict(setup.env), stdout=out,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    while True:
        try:
            return process.wait(timeout=HEARTBEAT_S)
        except subprocess.TimeoutExpired:
            elapsed = time.perf_counter() - start
            last = _tail(log, 1).strip()[:70]
            _progress(f"    {setup.name} {elapsed:5.0f} s, disk {disk.last.total / GIB:.2f} "
                      f"GiB | {last}")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("+", "p")).strip("-")


def _tail(log: Path, lines: int) -> str:
    with log.open("rb") as f:
        f.seek(max(0, log.stat().st_size - 8192))
        text = f.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _summary(m: Measurement) -> str:
    state = "ok" if m.ok else "FAILED"
    return (f"{state}, {m.wall_s:.1f} s wall, {m.cpu_s:.1f} s CPU, peak disk "
            f"{m.disk_peak / GIB:.2f} GiB ({m.disk_own_peak / GIB:.2f} own); {m.note}")


def _progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class DiskSampler:
    """Peak disk use of a folder, walked in this process (so no child CPU time is added)
    about once a second, less often when a walk is slow."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peak = DiskUsage(0, 0)
        self.last = DiskUsage(0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            self._sample()
            self._stop.wait(max(1.0, 4 * (time.perf_counter() - start)))

    def _sample(self) -> None:
        self.last = disk_usage(self.folder)
        self.peak = DiskUsage(max(self.peak.total, self.last.total),
                              max(self.peak.own, self.last.own))


def disk_usage(folder: Path) -> DiskUsage:
    sizes: dict[tuple[int, int], int] = {}  # inode -> allocated bytes
    links: dict[tuple[int, int], int] = {}  # inode -> hard links in all
    seen: dict[tuple[int, int], int] = {}   # inode -> hard links inside the folder
    for st, is_dir in _walk(folder):
        key = (st.st_dev, st.st_ino)
        sizes[key] = st.st_blocks * 512
        links[key] = 1 if is_dir else st.st_nlink
        seen[key] = seen.get(key, 0) + 1
    own = sum(size for key, size in sizes.items() if seen[key] >= links[key])
    return DiskUsage(sum(sizes.values()), own)


def _walk(folder: Path) -> Iterator[tuple[os.stat_result, bool]]:
    stack = [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:  # removed while we walk
                        continue
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if is_dir:
                        stack.append(entry.path)
                    yield st, is_dir
        except OSError:
            continue


# --- report ---------------------------------------------------------------------------------

METRICS = (
    ("wall", "s", "wall_s"),
    ("CPU (user+sys)", "s", "cpu_s"),
    ("peak disk", "GiB", "disk_peak"),
    ("peak disk, own", "GiB", "disk_own_peak"),
)


@dataclass(frozen=True)
class Row:
    scenario: str
    what: str
    a: Measurement
    b: Measurement

    def ratio(self, field: str) -> float | None:
        """B/A, or None when either run failed: a failed run's time means nothing."""
        num, den = getattr(self.b, field), getattr(self.a, field)
        return num / den if self.a.ok and self.b.ok and den > 0 else None


@dataclass(frozen=True)
class Report:
    cells: str
    date: str
    cpus: int
    load_at_start: float  # 1-minute load average: others' work makes wall times noisy
    compatmatrix: str
    cache_bytes: dict[str, dict[str, int]]  # before, primed (when primed), after
    prime_s: dict[str, float]
    folder: str
    rows: list[Row]

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        for row, raw in zip(self.rows, data["rows"]):
            raw["ratio_b_over_a"] = {field: row.ratio(field) for _, _, field in METRICS}
        return data


def make_report(grid: Grid, results: Results, caches: dict[str, dict[str, int]],
                prime_s: dict[str, float], *, folder: str, load: float) -> Report:
    rows = [Row(s.name, s.what, results[(s.same_as or s.name, "A")], results[(s.name, "B")])
            for s in SCENARIOS]
    return Report(grid.describe(), datetime.datetime.now().isoformat(timespec="seconds"),
                  os.cpu_count() or 1, load, _git_revision(), caches, prime_s, folder, rows)


def _git_revision() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def format_report(report: Report) -> str:
    lines = [f"compatmatrix (A) vs plain nox (B) -- {report.cells}; {report.cpus} cores, "
             f"load {report.load_at_start:.1f} at start; compatmatrix {report.compatmatrix}",
             *_cache_lines(report), "", *_table(report.rows), "",
             *(f"{s.name:<10} {s.what}" for s in SCENARIOS), "",
             "A: compatmatrix run --jobs 2 (uv venvs, one wheel per build key, reused records)",
             "B: nox (virtualenv + pip), torch==X, extension built from source with "
             "--no-build-isolation, pytest -n auto;",
             "   pip config off (PIP_CONFIG_FILE=/dev/null, no PIP_FIND_LINKS), so pip gets "
             "PyPI's CUDA torch builds as A does",
             "peak disk: the setup's folder (work dir or .nox, source copy and in-tree build, "
             "TMPDIR), each inode once;",
             "   own: less files hard-linked from outside the folder (uv's cache)", ""]
    for row in report.rows:
        if row.scenario != "rerun -r":  # A's row there is its rerun, listed above
            lines.append(_status_line(row.scenario, row.a))
        lines.append(_status_line(row.scenario, row.b))
    lines.append(f"logs: {report.folder}/logs")
    return "\n".join(lines)


def _cache_lines(report: Report) -> list[str]:
    stages = report.cache_bytes
    sizes = ", ".join(
        f"{name} " + " -> ".join(f"{stages[stage][name] / GIB:.2f}{_STAGE_NOTE[stage]}"
                                 for stage in stages) + " GiB"
        for name in stages["before"])
    if not report.prime_s:
        return [f"package caches shared and warm in every run (not primed): {sizes}"]
    took = ", ".join(f"{tool} {seconds:.0f} s" for tool, seconds in report.prime_s.items())
    lines = [f"package caches shared and warm in every run: {sizes}",
             f"priming them first (not measured) took {took}"]
    pip = stages["primed"].get("pip", 0) - stages["before"].get("pip", 0)
    if pip < 100 * 1024**2:
        lines.append("warning: pip kept nothing in its cache while priming (an index that "
                     "sends no HTTP caching headers?),")
        lines.append("  so every B session downloads torch and its CUDA libraries again; "
                     "the pip priming time is about that download")
    return lines


_STAGE_NOTE = {"before": "", "primed": " (primed)", "after": ""}


def _table(rows: list[Row]) -> list[str]:
    header = ("scenario", "metric", "A compatmatrix", "B plain nox", "B/A")
    body: list[tuple[str, ...]] = []
    for row in rows:
        for index, (label, unit, field) in enumerate(METRICS):
            ratio = row.ratio(field)
            body.append((row.scenario if index == 0 else "", f"{label} ({unit})",
                         _value(row.a, field), _value(row.b, field),
                         "n/a" if ratio is None else f"{ratio:.2f}"))
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
    lines = [_line(header, widths), _line(tuple("-" * w for w in widths), widths)]
    return lines + [_line(r, widths) for r in body]


def _value(measurement: Measurement, field: str) -> str:
    value = getattr(measurement, field)
    text = f"{value / GIB:.2f}" if field.startswith("disk") else f"{value:.1f}"
    return text if measurement.ok else f"{text} FAILED"


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    left = [c.ljust(w) for c, w in zip(cells[:2], widths[:2])]
    right = [c.rjust(w) for c, w in zip(cells[2:], widths[2:])]
    return "  ".join(left + right).rstrip()


def _status_line(scenario: str, m: Measurement) -> str:
    return f"{scenario:<10} {m.setup}: {'ok' if m.ok else 'FAILED'}, {m.note}"


def save(report: Report) -> Path:
    folder = REPO / "bench" / "results"
    folder.mkdir(exist_ok=True)
    path = folder / f"matrix-{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
