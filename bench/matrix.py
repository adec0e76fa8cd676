"""compatmatrix (A) against its strongest peers on one matrix of kernels/, and against the floor.

Run by hand, never in CI (it takes many minutes and needs torch builds in the caches):

    python bench/matrix.py [--cells small|full] [--peers all|B,C,D] [--scenarios NAMES]
                           [--keep DIR] [--save] [--no-prime] [--downloads] [--no-peer-ccache]

The setups, each on its own copy of kernels/ in one temporary folder (or DIR), run the same
cells (Python x torch, PyPI's CUDA 13.0 builds, which the installed nvcc 13 compiles for):

- A: compatmatrix run (uv venvs, one wheel per build key, reused records);
- B: plain nox, nox's default virtualenv + pip backend (bench/plain_noxfile.py);
- C: the same noxfile with ``nox.options.default_venv_backend = "uv|virtualenv"``;
- D: tox with tox-uv: a tox.toml with the same environments, ``package = "wheel"`` and a
  wheel_build_env per Python and torch, whose build requirements are held to the cell's
  torch (UV_CONSTRAINT) so the wheel is built against it, not against the newest torch.

Scenarios, one after the other: cold, an unchanged rerun (and the nox setups with -r), a
test edit, a C++ edit with ccache off, a second C++ edit with ccache on. Per run: wall time,
CPU time of the child processes, and the peak disk of the setup's own folder. A's records give
its profile per stage, its critical path and the floor (one build per build key plus the
suites) with A's overhead above it. uv's and pip's caches are shared, warm and primed first.
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
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
MARKER = ".bench-matrix"  # marks a --keep folder as ours, so a rerun may clear it
GIB = 1024**3
HEARTBEAT_S = 30.0

# PyPI's own torch builds for Linux x86_64 since 2.11 are CUDA 13.0 builds: the installed nvcc
# 13 compiles for them (the kernels' CUDA code needs an nvcc of torch's CUDA major), so every
# setup can build every cell here.
VARIANTS = {"2.11.0": "cu130", "2.12.0": "cu130", "2.13.0": "cu130"}
CELLS = {
    "one": (("3.11",), ("2.13.0",)),  # a smoke test of the benchmark itself
    "small": (("3.11", "3.12"), ("2.13.0",)),
    "full": (("3.10", "3.11", "3.12"), ("2.12.0", "2.13.0")),
}
# Peak disk a run needs, mostly B's venvs (pip copies a CUDA torch into each: about 4.7 GiB).
NEEDS_GIB = {"one": 15, "small": 25, "full": 60}
TEST_REQUIRES = ("pytest>=8", "pytest-xdist>=3", "numpy")
PRIME_REQUIRES = ("numpy", "pytest", "pytest-xdist", "setuptools", "wheel")
SUITES = ("tests/import", "tests/unit")

PEERS = ("B", "C", "D")
TITLES = {"A": "compatmatrix", "B": "nox (virtualenv+pip)", "C": "nox (uv)", "D": "tox (tox-uv)"}
NOX_PEERS = ("B", "C")


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

    def setup(self, name: str) -> Path:
        return self.root / name

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pythons(self) -> Path:
        return self.root / "pythons"

    @property
    def ccache_bin(self) -> Path:
        return self.root / "ccache-bin"

    @property
    def cuda_home(self) -> Path:
        return self.root / "cuda-home"


@dataclass(frozen=True)
class Edit:
    path: str  # relative to kernels/
    line: str


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    edit: Edit | None = None
    nox_reuse: bool = False   # the nox setups only (-r); the others repeat `same_as`
    same_as: str | None = None
    ccache: bool = True       # False: CCACHE_DISABLE=1 for every setup
    needs_ccache: bool = False  # skipped when ccache is not installed


SCENARIOS = (
    Scenario("cold", "fresh work dir / .nox / .tox and ccache; uv and pip caches warm"),
    Scenario("rerun", "nothing changed; plain `nox`, `tox`, `compatmatrix run`"),
    Scenario("rerun -r", "nothing changed; the nox setups with `nox -r` (others: their rerun)",
             nox_reuse=True, same_as="rerun"),
    Scenario("test edit", "a comment appended to tests/unit/test_ops.py",
             Edit("tests/unit/test_ops.py", "# bench/matrix.py: a test-file edit")),
    Scenario("C++ edit", "a comment appended to csrc/ops.cpp; ccache off (CCACHE_DISABLE=1)",
             Edit("csrc/ops.cpp", "// bench/matrix.py: a C++ edit"), ccache=False),
    Scenario("C++ edit, ccache", "another comment appended to csrc/ops.cpp; ccache on",
             Edit("csrc/ops.cpp", "// bench/matrix.py: a second C++ edit"), needs_ccache=True),
)
SCENARIO_NAMES = tuple(s.name for s in SCENARIOS)


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
    records: list[dict[str, Any]] = field(default_factory=list)  # A only: its cell records


Results = dict[tuple[str, str], Measurement]  # (scenario, setup) -> its run


@dataclass(frozen=True)
class Setup:
    name: str  # "A" .. "D"
    folder: Path
    env: Mapping[str, str]
    command: Callable[[Scenario], list[str]]
    check: Callable[[int, Path], tuple[bool, str]]
    cwd: Path

    @property
    def title(self) -> str:
        return TITLES[self.name]


@dataclass(frozen=True)
class Options:
    peers: tuple[str, ...]
    scenarios: tuple[str, ...]
    prime: bool = True
    downloads: bool = False
    peer_ccache: bool = True


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    grid = Grid(args.cells, *CELLS[args.cells])
    options = Options(_peers(args.peers), _scenarios(args.scenarios), prime=not args.no_prime,
                      downloads=args.downloads, peer_ccache=not args.no_peer_ccache)
    _check_tools(options.peers)
    load = os.getloadavg()[0]
    if load > 0.5:
        _progress(f"warning: load average {load:.1f} before starting: wall times will be noisy")
    with _root(args.keep) as root:
        run = run_benchmark(Layout(root), grid, options)
    kept = str(root) if args.keep else f"{root} (deleted; --keep DIR keeps it)"
    report = make_report(grid, options, run, folder=kept, load=load)
    print()
    print(format_report(report))
    if args.save:
        print(f"saved {save(report)}")
    return 0 if all(m.ok for m in run.results.values()) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="compatmatrix against nox (pip), nox (uv) and tox (tox-uv), and against "
                    "the floor: wall, CPU and disk per scenario.")
    parser.add_argument("--cells", choices=sorted(CELLS), default="full",
                        help="small: 2 cells (py3.11, py3.12 x torch 2.13.0 cu130); full: 6 "
                             "cells (py3.10-3.12 x torch 2.12.0, 2.13.0 cu130); one: 1 cell, "
                             "a smoke test of the benchmark")
    parser.add_argument("--peers", default="all",
                        help="the peers run next to A (always run): all, or a list such as "
                             "B,C or A,C (B: nox + pip, C: nox + uv, D: tox + tox-uv)")
    parser.add_argument("--scenarios", default="all",
                        help=f"all, or a comma-separated list of: {', '.join(SCENARIO_NAMES)} "
                             "(cold always runs first)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR (new, or a previous --keep folder) and keep it")
    parser.add_argument("--save", action="store_true",
                        help="also write bench/results/matrix-<date>.json")
    parser.add_argument("--no-prime", action="store_true",
                        help="do not fill the uv and pip caches (unmeasured) before the runs")
    parser.add_argument("--downloads", action="store_true",
                        help="first measure A cold with an empty uv cache of its own (a new "
                             "folder: the shared cache is never emptied), to tell what "
                             "downloads cost; needs the index and several GB")
    parser.add_argument("--no-peer-ccache", action="store_true",
                        help="give B-D no ccache (A uses it whenever it is installed)")
    return parser


def _peers(text: str) -> tuple[str, ...]:
    if text == "all":
        return PEERS
    names = {part.strip().upper() for part in text.split(",") if part.strip()}
    unknown = names - {"A", *PEERS}
    if unknown:
        sys.exit(f"bench/matrix.py: unknown peer {', '.join(sorted(unknown))} "
                 f"(A is compatmatrix; peers: {', '.join(PEERS)})")
    return tuple(p for p in PEERS if p in names)


def _scenarios(text: str) -> tuple[str, ...]:
    if text == "all":
        return SCENARIO_NAMES
    names = {part.strip() for part in text.split(",") if part.strip()} | {"cold"}
    unknown = names - set(SCENARIO_NAMES)
    if unknown:
        sys.exit(f"bench/matrix.py: unknown scenario {', '.join(sorted(unknown))} "
                 f"(scenarios: {', '.join(SCENARIO_NAMES)})")
    if "rerun -r" in names:
        names.add("rerun")
    return tuple(n for n in SCENARIO_NAMES if n in names)


def _check_tools(peers: Sequence[str]) -> None:
    needed = {"nox": NOX_PEERS, "virtualenv": ("B",), "tox": ("D",), "tox_uv": ("D",)}
    missing = [module for module, users in needed.items()
               if set(users) & set(peers) and not _importable(module)]
    if missing:
        sys.exit(f"bench/matrix.py: {', '.join(missing)} not installed in {sys.executable}: "
                 "pip install -e '.[bench]'")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


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


# --- the run ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    results: Results
    cache_bytes: dict[str, dict[str, int]]  # before, primed (when primed), after
    prime_s: dict[str, float]
    jobs: int
    ccache: str | None
    downloads: Measurement | None = None
    download_bytes: int = 0


def run_benchmark(layout: Layout, grid: Grid, options: Options) -> Run:
    free = shutil.disk_usage(layout.root).free / GIB
    if free < NEEDS_GIB[grid.name]:
        _progress(f"warning: {free:.0f} GiB free in {layout.root}; this run needs about "
                  f"{NEEDS_GIB[grid.name]} GiB")
    jobs = os.cpu_count() or 1
    ccache = shutil.which("ccache")
    setups = prepare(layout, grid, options, jobs)
    caches = cache_dirs()
    sizes = {"before": cache_sizes(caches)}
    prime_s: dict[str, float] = {}
    if options.prime:
        prime_s = prime(layout, grid, setups)
        sizes["primed"] = cache_sizes(caches)
    downloads, download_bytes = None, 0
    if options.downloads:
        downloads, download_bytes = measure_downloads(layout, setups["A"])
    results = run_scenarios(layout, setups, options, ccache)
    sizes["after"] = cache_sizes(caches)
    return Run(results, sizes, prime_s, jobs, ccache, downloads, download_bytes)


def prepare(layout: Layout, grid: Grid, options: Options, jobs: int) -> dict[str, Setup]:
    names = ("A", *options.peers)
    for name in names:
        _copy_kernels(layout.setup(name) / "kernels")
        (layout.setup(name) / "tmp").mkdir()
    layout.logs.mkdir()
    a = layout.setup("A")
    (a / "matrix.yaml").write_text(matrix_yaml(grid))
    env_a = _env_a(layout)
    found = interpreters(a / "matrix.yaml", env_a)
    _python_links(layout.pythons, found)
    ccache = shutil.which("ccache")
    if ccache:
        _masquerade(layout.ccache_bin, Path(ccache))
    _peer_cuda_home(layout.cuda_home)
    setups = {"A": _setup_a(layout, grid, env_a, jobs)}
    template = (REPO / "bench" / "plain_noxfile.py").read_text()
    for name in options.peers:
        folder = layout.setup(name)
        env = _env_peer(layout, folder, ccache, use_ccache=options.peer_ccache)
        if name in NOX_PEERS:
            (folder / "noxfile.py").write_text(noxfile(template, grid, uv=name == "C"))
            setups[name] = _setup_nox(name, folder, grid, env)
        else:
            write_tox(folder, grid, found)
            setups[name] = _setup_tox(name, folder, grid, env)
    return setups


def _copy_kernels(dest: Path) -> None:
    skip = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                  "*.so", "*.o", "_build_info.py", ".tox", ".nox")
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
        + "indexes: {" + ", ".join(f"{v}: pypi" for v in variants)
        + ", find_links: [pip-config]}\n"
        "suites:\n"
        f"  import: {{paths: [kernels/{SUITES[0]}]}}\n"
        f"  unit: {{paths: [kernels/{SUITES[1]}], workers: auto}}\n"
    )


def noxfile(template: str, grid: Grid, *, uv: bool) -> str:
    """bench/plain_noxfile.py with the grid's Pythons and torches; for C, uv as the backend."""
    text, found = re.subn(r"@nox\.session\(python=\[[^\]]*\]\)",
                          f"@nox.session(python={json.dumps(list(grid.pythons))})", template)
    text, found_torch = re.subn(r'@nox\.parametrize\("torch", \[[^\]]*\]\)',
                                f'@nox.parametrize("torch", {json.dumps(list(grid.torches))})',
                                text)
    if (found, found_torch) != (1, 1) or "\nimport nox\n" not in text:
        sys.exit("bench/matrix.py: bench/plain_noxfile.py no longer has the lines it rewrites")
    if uv:
        text = text.replace("\nimport nox\n", "\nimport nox\n\n"
                            'nox.options.default_venv_backend = "uv|virtualenv"\n', 1)
    return text


# what the build and the suites must see (tox passes PATH, TMPDIR and a few more by itself)
PASS_ENV = ["CCACHE_*", "PYTORCH_NVCC", "COMPAT_KERNELS_CUDA", "CUDA_HOME", "MAX_JOBS",
            "TORCH_CUDA_ARCH_LIST"]


# torch's CUDA headers include those of its nvidia-* dependencies, which sit in the venv (the
# CUDA 13 builds keep them all in nvidia/cu13)
CPATH_TOX = ("{env_site_packages_dir}/nvidia/cu13/include:"
             "{env_site_packages_dir}/nvidia/cu13/include/cccl")


def tox_env(python: str, torch: str) -> str:
    return f"py{python.replace('.', '')}-torch{torch.replace('.', '')}"


def write_tox(folder: Path, grid: Grid, found: Mapping[str, Path]) -> None:
    """kernels/tox.toml (and the torch constraints its build environments read)."""
    kernels = folder / "kernels"
    envs = [tox_env(p, t) for p in grid.pythons for t in grid.torches]
    command = ["pytest", "-n", "auto", *SUITES]
    lines = ['requires = ["tox>=4.22", "tox-uv>=1.11"]', f"env_list = {json.dumps(envs)}",
             "", "[env_run_base]", 'package = "wheel"', f"commands = [{json.dumps(command)}]",
             f"pass_env = {json.dumps(PASS_ENV)}", "", "[env_pkg_base]",
             f"pass_env = {json.dumps(PASS_ENV)}"]
    for torch in grid.torches:
        (folder / f"constraints-torch{torch}.txt").write_text(f"torch=={torch}\n")
    for python in grid.pythons:
        for torch in grid.torches:
            name = tox_env(python, torch)
            deps = [f"torch=={torch}", "numpy", "pytest", "pytest-xdist"]
            constraint = folder / f"constraints-torch{torch}.txt"
            lines += ["", f'[env."{name}"]', f"base_python = [{json.dumps(str(found[python]))}]",
                      f'wheel_build_env = ".pkg-{name}"', f"deps = {json.dumps(deps)}",
                      "", f'[env.".pkg-{name}"]',
                      f"base_python = [{json.dumps(str(found[python]))}]",
                      # the build requirements (torch>=2.6) held to the cell's torch
                      f"set_env = {{ UV_CONSTRAINT = {json.dumps(str(constraint))}, "
                      f"CPATH = {json.dumps(CPATH_TOX)} }}"]
    (kernels / "tox.toml").write_text("\n".join(lines) + "\n")


def _env_a(layout: Layout) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "TMPDIR": str(layout.setup("A") / "tmp"),
            "CCACHE_DIR": str(layout.setup("A") / "ccache")}


def _env_peer(layout: Layout, folder: Path, ccache: str | None, *,
              use_ccache: bool) -> dict[str, str]:
    # PyPI's torch builds, as A gets them: without pip's configured find-links (which hold a
    # torch 2.13.0+cpu wheel for cp311) or configured extra indexes. The CUDA kernels are
    # required (COMPAT_KERNELS_CUDA=1), so a peer cannot pass by building less.
    drop = {"PIP_FIND_LINKS", "PYTHONPATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PIP_CONFIG_FILE"] = os.devnull
    path = [str(layout.pythons), env.get("PATH", "")]
    env["TMPDIR"] = str(folder / "tmp")
    env["COMPAT_KERNELS_CUDA"] = "1"
    if layout.cuda_home.is_dir():
        env["CUDA_HOME"] = str(layout.cuda_home)
    nvcc = shutil.which("nvcc")
    if ccache and use_ccache:
        # the usual setup: the compilers through ccache on PATH and nvcc through it too
        # (recent torch wraps both in ccache by itself when it is on PATH; this makes it so
        # for every torch), with a cache of the setup's own
        path.insert(0, str(layout.ccache_bin))
        env.update(CCACHE_DIR=str(folder / "ccache"), CCACHE_BASEDIR=str(folder),
                   CCACHE_NOHASHDIR="1")
        if nvcc:
            env["PYTORCH_NVCC"] = f"{ccache} {nvcc}"
    elif ccache:
        env["CCACHE_DISABLE"] = "1"  # torch would wrap the compilers in it by itself
    env["PATH"] = os.pathsep.join(path)
    return env


def _peer_cuda_home(folder: Path) -> None:
    """A CUDA_HOME for B-D laid out as a toolkit install is (made once, not measured): the
    installed nvcc's toolkit with ``include`` holding its headers. Some toolkits (PyPI's
    nvidia-cuda-nvcc unpacked into /usr/local, as here) keep them only under
    ``targets/<arch>/include``, where torch's extension builder does not look. compatmatrix
    finds them through nvcc itself; a plain setup needs the usual layout."""
    from compatmatrix.host.toolchain import probe

    found = shutil.which("nvcc")
    if found is None:
        return
    nvcc = probe(Path(found), "system", os.environ)
    if not nvcc.include_dirs:
        return
    include = nvcc.include_dirs[0]
    toolkit = include.parents[2] if include.parent.parent.name == "targets" else include.parent
    folder.mkdir()
    for entry in sorted(toolkit.iterdir()):
        if entry.name != "include":
            (folder / entry.name).symlink_to(entry)
    (folder / "include").symlink_to(include)


def _masquerade(folder: Path, ccache: Path) -> None:
    folder.mkdir()
    for name in ("cc", "c++", "gcc", "g++"):
        (folder / name).symlink_to(ccache)


def interpreters(matrix: Path, env: Mapping[str, str]) -> dict[str, Path]:
    """The interpreter compatmatrix picks for each Python, so that the peers use the same."""
    argv = [sys.executable, "-m", "compatmatrix", "plan", "--json", "--matrix", str(matrix)]
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
    # pyenv's shims for pythonX.Y fail unless that version is selected; nox and uv find these.
    folder.mkdir()
    for version, path in found.items():
        (folder / f"python{version}").symlink_to(path)


def _setup_a(layout: Layout, grid: Grid, env: Mapping[str, str], jobs: int) -> Setup:
    folder = layout.setup("A")
    argv = [sys.executable, "-m", "compatmatrix", "run", "--matrix", str(folder / "matrix.yaml"),
            "--workdir", str(folder / "work"), "--jobs", str(jobs)]
    return Setup("A", folder, env, lambda _: argv,
                 lambda rc, log: check_a(rc, folder / "work", grid.size), folder)


def _setup_nox(name: str, folder: Path, grid: Grid, env: Mapping[str, str]) -> Setup:
    base = [sys.executable, "-m", "nox", "-f", str(folder / "noxfile.py"), "--no-color"]

    def command(scenario: Scenario) -> list[str]:
        return [*base, *(["-r"] if scenario.nox_reuse else [])]

    return Setup(name, folder, env, command,
                 lambda rc, log: check_nox(rc, log, folder / ".nox", grid.size), folder)


def _setup_tox(name: str, folder: Path, grid: Grid, env: Mapping[str, str]) -> Setup:
    kernels = folder / "kernels"
    argv = [sys.executable, "-m", "tox", "-c", str(kernels / "tox.toml"), "--colored", "no"]
    return Setup(name, folder, env, lambda _: argv,
                 lambda rc, log: check_tox(rc, log, kernels / ".tox", grid.size), kernels)


# --- checks: a run that is not green is reported, not timed as if it were ------------------

def check_a(returncode: int, workdir: Path, expected: int) -> tuple[bool, str]:
    records = [json.loads(p.read_text()) for p in sorted(workdir.glob("results/*.json"))]
    statuses = [r.get("status") for r in records]
    passed = statuses.count("passed")
    reused = sum(bool(r.get("reused")) for r in records)
    setup = sum(bool(r.get("setup_reused")) for r in records)
    torches = sorted({str(r["running_torch"]) for r in records if r.get("running_torch")})
    note = (f"{passed}/{expected} cells passed, {reused} reused, {setup} with their setup "
            f"reused, torch {', '.join(torches)}")
    ok = returncode == 0 and passed == expected == len(records)
    bad = [f"{r.get('cell')}: {r.get('status')} at {r.get('stage') or '-'}: {r.get('reason')}"
           for r in records if r.get("status") != "passed"]
    return ok, note if ok else "; ".join([f"rc={returncode}", note, *bad])


_SESSION_OK = re.compile(r"Session \S+ was successful")
_TOX_OK = re.compile(r"^\s*(py\S+): OK \(", re.M)


def check_nox(returncode: int, log: Path, envdir: Path, expected: int) -> tuple[bool, str]:
    successful = len(_SESSION_OK.findall(log.read_text(errors="replace")))
    return _check_peer(returncode, successful, "sessions", envdir, expected)


def check_tox(returncode: int, log: Path, envdir: Path, expected: int) -> tuple[bool, str]:
    successful = len(set(_TOX_OK.findall(log.read_text(errors="replace"))))
    return _check_peer(returncode, successful, "environments", envdir, expected)


def _check_peer(returncode: int, successful: int, what: str, envdir: Path,
                expected: int) -> tuple[bool, str]:
    torches = sorted(set(installed_torches(envdir)))
    without_cuda = sorted(without_cuda_kernels(envdir))
    note = f"{successful}/{expected} {what} successful, torch {', '.join(torches)}"
    cpu_torch = any("+cpu" in t or "cuda None" in t for t in torches)
    ok = returncode == 0 and successful == expected and not cpu_torch and not without_cuda
    if without_cuda:
        note += f"; no CUDA kernels built in {', '.join(without_cuda)}"
    return ok, note if ok else f"rc={returncode}; {note}"


def installed_torches(envdir: Path) -> Iterator[str]:
    """`2.13.0 (cuda 13.0)` for each venv, read from torch/version.py without importing."""
    for version_py in sorted(envdir.glob("*/lib/python*/site-packages/torch/version.py")):
        text = version_py.read_text()
        version = re.search(r"^__version__ = '([^']+)'", text, re.M)
        cuda = re.search(r"^cuda: Optional\[str\] = '?([^'\s]+)", text, re.M)
        yield f"{_group(version)} (cuda {_group(cuda)})"


def without_cuda_kernels(envdir: Path) -> Iterator[str]:
    """The venvs whose compat_kernels was built without its CUDA kernels (its build info)."""
    for info in sorted(envdir.glob("*/lib/python*/site-packages/compat_kernels/_build_info.py")):
        if re.search(r"^CUDA_ARCHS = None", info.read_text(), re.M):
            yield info.parts[-6]


def _group(match: re.Match[str] | None) -> str:
    return match.group(1) if match else "?"


# --- priming the shared package caches (not measured) -------------------------------------

def prime(layout: Layout, grid: Grid, setups: Mapping[str, Setup]) -> dict[str, float]:
    """Fill uv's cache (A, C, D) and pip's cache (B) with the cells' torch builds and test
    tools, so that the cold scenario measures a cold project, not a first-ever download.
    Returns the seconds each tool took."""
    scratch = layout.root / "prime"
    links = {p.name.removeprefix("python"): p for p in layout.pythons.iterdir()}
    took = {"uv": 0.0, **({"pip": 0.0} if "B" in setups else {})}
    for python in grid.pythons:
        for torch in grid.torches:
            _progress(f"priming caches (not measured): Python {python}, torch {torch}")
            requires = [f"torch=={torch}", *PRIME_REQUIRES]
            took["uv"] += _timed(partial(_prime_uv, scratch / "uv", links[python], requires,
                                         setups["A"].env))
            if "B" in setups:
                took["pip"] += _timed(partial(_prime_pip, scratch / "pip", links[python],
                                              requires, setups["B"].env))
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


def measure_downloads(layout: Layout, a: Setup) -> tuple[Measurement, int]:
    """A cold, with an empty uv cache of its own (never the shared one): what the first run
    on a machine adds is the downloads (and unpacking them). Its work dir is then removed."""
    cache = layout.root / "uv-cache-empty"
    env = {**a.env, "UV_CACHE_DIR": str(cache)}
    _progress(f"downloads: A cold with an empty uv cache ({cache})")
    measured = measure(Setup(a.name, a.folder, env, a.command, a.check, a.cwd),
                       Scenario("downloads", "A cold, uv cache empty"), layout.logs)
    _progress(f"  A {a.title}: {_summary(measured)}")
    size = disk_usage(cache).total
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(a.folder / "work", ignore_errors=True)
    shutil.rmtree(a.folder / "ccache", ignore_errors=True)
    return measured, size


# --- running and measuring ------------------------------------------------------------------

def run_scenarios(layout: Layout, setups: Mapping[str, Setup], options: Options,
                  ccache: str | None) -> Results:
    results: Results = {}
    chosen = [s for s in SCENARIOS if s.name in options.scenarios]
    for number, scenario in enumerate(chosen, 1):
        if scenario.needs_ccache and ccache is None:
            _progress(f"scenario {scenario.name}: skipped, ccache is not installed")
            continue
        _progress(f"scenario {number}/{len(chosen)} {scenario.name}: {scenario.what}")
        if scenario.edit is not None:
            for setup in setups.values():
                _append(setup.folder / "kernels" / scenario.edit.path, scenario.edit.line)
        for setup in setups.values():
            if scenario.same_as is not None and setup.name not in NOX_PEERS:
                continue  # their row repeats `same_as`
            env = dict(setup.env)
            if not scenario.ccache:
                env["CCACHE_DISABLE"] = "1"
            measured = measure(Setup(setup.name, setup.folder, env, setup.command,
                                     setup.check, setup.cwd), scenario, layout.logs)
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
    records = read_records(setup.folder / "work") if setup.name == "A" else []
    return Measurement(setup.name, scenario.name, returncode, ok, note, wall, cpu,
                       disk.peak.total, disk.peak.own, str(log), records)


def read_records(workdir: Path) -> list[dict[str, Any]]:
    """What the profile and the floor need of A's records, as this run left them."""
    keep = ("cell", "build_key", "status", "durations", "reused", "setup_reused",
            "wheel_reused")
    records = []
    for path in sorted(workdir.glob("results/*.json")):
        data = json.loads(path.read_text())
        records.append({key: data.get(key) for key in keep})
    return records


def _wait(argv: list[str], setup: Setup, out: IO[str], log: Path, disk: DiskSampler,
          start: float) -> int:
    process = subprocess.Popen(argv, cwd=setup.cwd, env=dict(setup.env), stdout=out,
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


# --- A's own stages: profile, critical path, floor ---------------------------------------

SETUP_STAGES = ("metadata", "resolve", "build", "audit", "install", "identity")


def _built(record: Mapping[str, Any]) -> bool:
    """This run compiled the record's wheel (not a reused record, setup or cached wheel)."""
    return (not record.get("reused") and not record.get("setup_reused")
            and not record.get("wheel_reused") and "build" in (record.get("durations") or {}))


def _durations(record: Mapping[str, Any]) -> dict[str, float]:
    if record.get("reused"):
        return {}  # an earlier run's stages: none of them ran now
    return {k: float(v) for k, v in (record.get("durations") or {}).items() if v is not None}


def stage_profile(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Seconds per stage, summed over the cells (suites one by one, in stage order)."""
    total: dict[str, float] = {}
    for record in records:
        for stage, seconds in _durations(record).items():
            total[stage] = total.get(stage, 0.0) + seconds
    order = {stage: i for i, stage in enumerate(SETUP_STAGES)}
    return dict(sorted(total.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


@dataclass(frozen=True)
class CriticalPath:
    cell: str
    stages: dict[str, float]  # the cell's own stages, and the build it waited for

    @property
    def seconds(self) -> float:
        return sum(self.stages.values())


def critical_path(records: Sequence[Mapping[str, Any]]) -> CriticalPath | None:
    """The longest chain of stages that had to follow each other: a cell's own stages, after
    (for a cell whose build key another cell built) that cell's stages up to its build, which
    it waited for."""
    waited = {}
    for record in records:
        if _built(record):
            own = _durations(record)
            upto = list(own)[:list(own).index("build") + 1]
            waited[record["build_key"]] = (str(record.get("cell")), sum(own[s] for s in upto))
    longest = None
    for record in records:
        stages = _durations(record)
        if not stages:
            continue
        builder = waited.get(record.get("build_key"))
        if not _built(record) and builder is not None:
            stages = {f"waiting for {builder[0]}'s build": builder[1], **stages}
        path = CriticalPath(str(record.get("cell")), stages)
        if longest is None or path.seconds > longest.seconds:
            longest = path
    return longest


@dataclass(frozen=True)
class Floor:
    """What a perfect tool would still spend: one build per build key that had to be built,
    and every suite, nothing else (no metadata, resolve, audit, install, identity, nor the
    time between them), packed onto ``lanes`` parallel lanes, never shorter than the longest
    build followed by the suites of a cell of its key."""

    builds: float
    suites: float
    lanes: int
    chain: float

    @property
    def seconds(self) -> float:
        return max((self.builds + self.suites) / max(1, self.lanes), self.chain)


def floor(records: Sequence[Mapping[str, Any]], lanes: int) -> Floor:
    builds = {r["build_key"]: _durations(r)["build"] for r in records if _built(r)}
    suites_of: dict[str, float] = {}
    chain = 0.0
    for record in records:
        seconds = sum(v for k, v in _durations(record).items() if k.startswith("suite:"))
        suites_of[str(record.get("cell"))] = seconds
        chain = max(chain, builds.get(record.get("build_key"), 0.0) + seconds)
    return Floor(sum(builds.values()), sum(suites_of.values()), lanes, chain)


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
    runs: dict[str, Measurement]  # setup -> its run ("A" always there)

    def ratio(self, peer: str, metric: str) -> float | None:
        """peer/A, or None when either run failed or is missing: a failed run means nothing."""
        a, other = self.runs.get("A"), self.runs.get(peer)
        if a is None or other is None or not (a.ok and other.ok):
            return None
        num, den = getattr(other, metric), getattr(a, metric)
        return num / den if den > 0 else None


@dataclass(frozen=True)
class FloorRow:
    scenario: str
    cells: int
    a_wall: float
    floor: Floor

    @property
    def overhead(self) -> float:
        return self.a_wall - self.floor.seconds

    @property
    def per_cell(self) -> float:
        return self.overhead / max(1, self.cells)


@dataclass(frozen=True)
class Goal:
    text: str
    measured: str
    met: bool | None  # None: not measured in this run


@dataclass(frozen=True)
class Report:
    cells: str
    grid: str
    peers: list[str]
    date: str
    cpus: int
    jobs: int
    load_at_start: float  # 1-minute load average: others' work makes wall times noisy
    compatmatrix: str
    ccache: str | None
    peer_ccache: bool
    cache_bytes: dict[str, dict[str, int]]  # before, primed (when primed), after
    prime_s: dict[str, float]
    folder: str
    rows: list[Row]
    floors: list[FloorRow]
    cold_profile: dict[str, float]
    cold_critical: CriticalPath | None
    goals: list[Goal]
    downloads: Measurement | None
    download_bytes: int

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        for row, raw in zip(self.rows, data["rows"], strict=True):
            raw["ratio_over_a"] = {peer: {metric: row.ratio(peer, metric)
                                          for _, _, metric in METRICS} for peer in self.peers}
        for floor_row, raw in zip(self.floors, data["floors"], strict=True):
            raw.update(floor_s=floor_row.floor.seconds, overhead_s=floor_row.overhead,
                       overhead_per_cell_s=floor_row.per_cell)
        return data


def make_report(grid: Grid, options: Options, run: Run, *, folder: str,
                load: float) -> Report:
    results = run.results
    rows = []
    for scenario in SCENARIOS:
        runs = {setup: results.get((scenario.name, setup))
                or results.get((scenario.same_as or "", setup))
                for setup in ("A", *options.peers)}
        present = {k: v for k, v in runs.items() if v is not None}
        if (scenario.name, "A") in results or any(
                (scenario.name, p) in results for p in options.peers):
            rows.append(Row(scenario.name, scenario.what, present))
    floors = [FloorRow(s.name, grid.size, m.wall_s, floor(m.records, run.jobs))
              for s in SCENARIOS if (m := results.get((s.name, "A"))) is not None and m.ok]
    cold = results.get(("cold", "A"))
    records = cold.records if cold is not None else []
    return Report(grid.describe(), grid.name, list(options.peers),
                  datetime.datetime.now().isoformat(timespec="seconds"), os.cpu_count() or 1,
                  run.jobs, load, _git_revision(), run.ccache, options.peer_ccache,
                  run.cache_bytes, run.prime_s, folder, rows, floors, stage_profile(records),
                  critical_path(records), goals(grid, rows, floors), run.downloads,
                  run.download_bytes)


def goals(grid: Grid, rows: Sequence[Row], floors: Sequence[FloorRow]) -> list[Goal]:
    """Issue 16's goals, as this run measured them (the ratios against nox with uv, C)."""
    by_name = {row.scenario: row for row in rows}

    def ratio(scenario: str, at_least: float, text: str) -> Goal:
        row = by_name.get(scenario)
        value = row.ratio("C", "wall_s") if row is not None else None
        if value is None:
            return Goal(text, "not measured (needs A and C green)", None)
        return Goal(text, f"{value:.2f}x wall", value >= at_least)

    found = [ratio("cold", 4.0, f"cold {grid.size} cells >= 4x vs nox+uv"
                   + ("" if grid.name == "full" else " (the goal is for the 6 full cells)"))]
    cold, rerun = by_name.get("cold"), by_name.get("rerun")
    if cold is not None and rerun is not None and "A" in cold.runs and "A" in rerun.runs \
            and cold.runs["A"].ok and rerun.runs["A"].ok:
        share = rerun.runs["A"].wall_s / cold.runs["A"].wall_s
        found.append(Goal("unchanged rerun <= 3 % of cold", f"{share:.1%}", share <= 0.03))
    else:
        found.append(Goal("unchanged rerun <= 3 % of cold", "not measured", None))
    found.append(ratio("test edit", 5.0, "test edit >= 5x vs nox+uv"))
    found.append(ratio("C++ edit, ccache", 3.0, "C++ edit >= 3x vs nox+uv, with ccache"))
    if floors:
        worst = max(floors, key=lambda f: f.per_cell)
        found.append(Goal("per-cell overhead above the floor < 1 s",
                          f"worst {worst.per_cell:.2f} s ({worst.scenario})",
                          worst.per_cell < 1.0))
    else:
        found.append(Goal("per-cell overhead above the floor < 1 s", "not measured", None))
    return found


def _git_revision() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def format_report(report: Report) -> str:
    setups = ["A", *report.peers]
    ccache = (f"ccache {report.ccache}: A's own; "
              + ("B-D: compilers and nvcc through it (PATH, PYTORCH_NVCC)"
                 if report.peer_ccache else "B-D: none (--no-peer-ccache)")
              + "; off for every setup in 'C++ edit'") if report.ccache else \
        "ccache: not installed (the 'C++ edit, ccache' scenario is skipped)"
    lines = [f"compatmatrix (A) vs {', '.join(f'{p} {TITLES[p]}' for p in report.peers)} -- "
             f"{report.cells}; {report.cpus} cores, load {report.load_at_start:.1f} at start; "
             f"compatmatrix {report.compatmatrix}", *_cache_lines(report), ccache, "",
             *_table(report.rows, setups), "",
             *(f"{s.name:<17} {s.what}" for s in SCENARIOS), "",
             f"A: compatmatrix run --jobs {report.jobs} (uv venvs hardlinked from uv's cache, "
             "one wheel per build key, reused records and setups)",
             "B: nox, virtualenv + pip; C: the same noxfile, uv backend; both: torch==X, then "
             "the extension built from source",
             "   with --no-build-isolation, pytest -n auto; D: tox + tox-uv, package = wheel, a "
             "wheel_build_env per Python and torch,",
             "   its torch held to the cell's (UV_CONSTRAINT); peers: pip config off, PyPI's "
             "CUDA torch builds as A gets them",
             "peak disk: the setup's folder (work dir, .nox or .tox, source copy and in-tree "
             "build, TMPDIR, ccache), each inode once;",
             "   own: less files hard-linked from outside the folder (uv's cache)", "",
             *_floor_lines(report), "", *_profile_lines(report), "",
             "goals (issue 16):",
             *(f"  {'met   ' if g.met else 'MISSED' if g.met is False else '--    '} "
               f"{g.text}: {g.measured}" for g in report.goals), ""]
    if report.downloads is not None:
        lines += [*_download_lines(report), ""]
    for row in report.rows:
        for setup in setups:
            m = row.runs.get(setup)
            if m is not None and m.scenario == row.scenario:
                lines.append(f"{row.scenario:<17} {setup}: {'ok' if m.ok else 'FAILED'}, "
                             f"{m.note}")
    lines.append(f"logs: {report.folder}/logs")
    return "\n".join(lines)


def _cache_lines(report: Report) -> list[str]:
    stages = report.cache_bytes
    sizes = ", ".join(
        f"{name} " + " -> ".join(f"{stages[stage][name] / GIB:.2f}{_STAGE_NOTE[stage]}"
                                 for stage in stages if name in stages[stage]) + " GiB"
        for name in stages["before"])
    if not report.prime_s:
        return [f"package caches shared and warm in every run (not primed): {sizes}"]
    took = ", ".join(f"{tool} {seconds:.0f} s" for tool, seconds in report.prime_s.items())
    lines = [f"package caches shared and warm in every run: {sizes}",
             f"priming them first (not measured) took {took}"]
    pip = stages["primed"].get("pip", 0) - stages["before"].get("pip", 0)
    if "pip" in report.prime_s and pip < 100 * 1024**2:
        lines.append("warning: pip kept nothing in its cache while priming (an index that "
                     "sends no HTTP caching headers?),")
        lines.append("  so every B session downloads torch and its CUDA libraries again; "
                     "the pip priming time is about that download")
    return lines


_STAGE_NOTE = {"before": "", "primed": " (primed)", "after": ""}


def _table(rows: Sequence[Row], setups: Sequence[str]) -> list[str]:
    peers = [s for s in setups if s != "A"]
    header = ("scenario", "metric", *(f"{s} {TITLES[s]}" for s in setups),
              *(f"{p}/A" for p in peers))
    body: list[tuple[str, ...]] = []
    for row in rows:
        for index, (label, unit, metric) in enumerate(METRICS):
            values = [_value(row.runs.get(s), metric) for s in setups]
            ratios = [row.ratio(p, metric) for p in peers]
            body.append((row.scenario if index == 0 else "", f"{label} ({unit})", *values,
                         *("n/a" if r is None else f"{r:.2f}" for r in ratios)))
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
    lines = [_line(header, widths), _line(tuple("-" * w for w in widths), widths)]
    return lines + [_line(r, widths) for r in body]


def _value(measurement: Measurement | None, metric: str) -> str:
    if measurement is None:
        return "-"
    value = getattr(measurement, metric)
    text = f"{value / GIB:.2f}" if metric.startswith("disk") else f"{value:.1f}"
    return text if measurement.ok else f"{text} FAILED"


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    left = [c.ljust(w) for c, w in zip(cells[:2], widths[:2], strict=True)]
    right = [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
    return "  ".join(left + right).rstrip()


def _floor_lines(report: Report) -> list[str]:
    if not report.floors:
        return ["floor: no green A run"]
    header = ("scenario", "A wall", "builds", "suites", "lanes", "chain", "floor", "A over",
              "per cell")
    body = [(r.scenario, f"{r.a_wall:.1f}", f"{r.floor.builds:.1f}", f"{r.floor.suites:.1f}",
             str(r.floor.lanes), f"{r.floor.chain:.1f}", f"{r.floor.seconds:.1f}",
             f"{r.overhead:.1f}", f"{r.per_cell:.2f}") for r in report.floors]
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
    return ["the floor, from A's own stage durations (records' durations): one build per "
            "build key that had to be built, and the suites;",
            "  floor = max((builds + suites) / lanes, longest build + suites of one cell); "
            "everything else is A's overhead (seconds)",
            *(_floor_line(r, widths) for r in (header, tuple("-" * w for w in widths), *body))]


def _floor_line(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join([cells[0].ljust(widths[0]),
                      *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])


def _profile_lines(report: Report) -> list[str]:
    profile = report.cold_profile
    if not profile:
        return ["profile of A's cold run: no records"]
    total = sum(profile.values())
    lines = ["profile of A's cold run, per stage summed over the cells (seconds, share):"]
    lines += [f"  {stage:<14} {seconds:8.1f}  {seconds / total:6.1%}"
              for stage, seconds in profile.items()]
    lines.append(f"  {'all stages':<14} {total:8.1f}")
    path = report.cold_critical
    if path is not None:
        steps = " + ".join(f"{stage} {seconds:.1f}" for stage, seconds in path.stages.items())
        lines.append(f"critical path ({path.cell}): {steps} = {path.seconds:.1f} s")
    return lines


def _download_lines(report: Report) -> list[str]:
    measured = report.downloads
    assert measured is not None
    cold = next((row.runs.get("A") for row in report.rows if row.scenario == "cold"), None)
    lines = [f"downloads: A cold with an empty uv cache: {_summary(measured)}",
             f"  uv's cache grew to {report.download_bytes / GIB:.2f} GiB"]
    if cold is not None and cold.ok and measured.ok:
        lines.append(f"  downloads cost about {measured.wall_s - cold.wall_s:.1f} s wall "
                     f"(empty-cache cold {measured.wall_s:.1f} s - warm cold "
                     f"{cold.wall_s:.1f} s)")
    return lines


def save(report: Report) -> Path:
    folder = REPO / "bench" / "results"
    folder.mkdir(exist_ok=True)
    path = folder / f"matrix-{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
