"""Resolve-only cells: how fast a pins table of 200 cells comes out, uv's cache warm.

Run by hand, never in CI (it asks PyPI for metadata):

    python bench/pins.py [--pythons 3.11,3.12] [--jobs N] [--keep DIR] [--save]

The matrix names no project: python x torch (10 releases) x vllm (10 releases), 200 cells on
two Pythons. Two ways, each timed after one unmeasured priming run that warms uv's cache:

- **A**: ``compatmatrix run --until resolve --force --jobs N`` (then ``report --pins``);
- **B**: the plain way, the strongest a script gets: one ``uv pip compile`` per cell with the
  same requirements and interpreter, N at a time (``xargs -P N``), nothing else.

Per way: wall time, CPU time (user + sys of the child processes), cells per second, and how
many cells resolved. A resolve-only cell mostly waits on the index, so A runs more cells at
once than it has cores (RESOLVE_ONLY_FACTOR per core); B runs N, as ``xargs -P $(nproc)``
does. The goal: 200 cells in under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH = ("2.7.1", "2.8.0", "2.9.0", "2.9.1", "2.10.0", "2.11.0", "2.12.0", "2.12.1",
         "2.13.0", "2.14.0")
VLLM = ("0.10.1.1", "0.10.2", "0.11.0", "0.12.0", "0.14.0", "0.17.0", "0.20.0", "0.25.0",
        "0.30.0", "0.33.0")


@dataclass
class Timing:
    way: str
    wall_s: float
    cpu_s: float
    cells: int
    resolved: int
    exit: int

    @property
    def per_second(self) -> float:
        return self.cells / self.wall_s if self.wall_s else 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def matrix_text(pythons: list[str]) -> str:
    def quoted(values: tuple[str, ...] | list[str]) -> str:
        return ", ".join(f'"{v}"' for v in values)

    return (f"version: 1\naxes:\n  python: [{quoted(pythons)}]\n  torch: [{quoted(TORCH)}]\n"
            f"  vllm: [{quoted(VLLM)}]\n")


def run_a(root: Path, jobs: int, env: dict[str, str]) -> Timing:
    cpu, start = _children_cpu(), time.monotonic()
    done = subprocess.run([sys.executable, "-m", "compatmatrix", "run", "--until", "resolve",
                           "--force", "--jobs", str(jobs), "--quiet"], cwd=root, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    records = [json.loads(p.read_text(encoding="utf-8"))
               for p in (root / ".compatmatrix" / "pins").glob("*.json")]
    if done.returncode not in (0, 1):
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
    return Timing("A compatmatrix --until resolve", wall, _children_cpu() - cpu, len(records),
                  sum(r["status"] == "resolvable" for r in records), done.returncode)


def run_b(root: Path, pythons: dict[str, str], jobs: int, env: dict[str, str]) -> Timing:
    cells = [(py, torch, vllm) for py in pythons for torch in TORCH for vllm in VLLM]
    uv = shutil.which("uv") or "uv"

    def one(cell: tuple[str, str, str]) -> bool:
        py, torch, vllm = cell
        done = subprocess.run([uv, "pip", "compile", "-", "--python", pythons[py],
                               "--no-header", "--quiet"], input=f"torch=={torch}\n"
                              f"vllm=={vllm}\n", env=env, capture_output=True, text=True,
                              check=False, cwd=root)
        return done.returncode == 0

    cpu, start = _children_cpu(), time.monotonic()
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(one, cells))
    wall = time.monotonic() - start
    return Timing(f"B uv pip compile, {jobs} at a time", wall, _children_cpu() - cpu,
                  len(cells), sum(results), 0)


def interpreters(versions: list[str]) -> dict[str, str]:
    sys.path.insert(0, str(REPO / "src"))
    from compatmatrix.host.interpreters import InterpreterFinder

    finder = InterpreterFinder(os.environ)
    found = {}
    for version in versions:
        result = finder.find(version)
        if result.path is None:
            raise SystemExit(f"bench/pins.py: no Python {version}: {result.problem}")
        found[version] = str(result.path)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pythons", default="3.11,3.12")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    versions = args.pythons.split(",")
    found = interpreters(versions)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "UV_PYTHON_DOWNLOADS": "never"}
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-pins-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "matrix.yaml").write_text(matrix_text(versions), encoding="utf-8")
    cells = len(versions) * len(TORCH) * len(VLLM)
    print(f"{cells} resolve-only cells in {folder}; load average {os.getloadavg()[0]:.2f}",
          flush=True)
    print("priming uv's cache (unmeasured) ...", flush=True)
    run_a(folder, args.jobs, env)
    results = [run_a(folder, args.jobs, env), run_b(folder, found, args.jobs, env)]
    subprocess.run([sys.executable, "-m", "compatmatrix", "report", "--pins"], cwd=folder,
                   env=env, capture_output=True, check=False)
    print(f"\n{'way':<36}{'wall s':>8}{'CPU s':>8}{'cells/s':>9}{'resolved':>10}")
    for t in results:
        print(f"{t.way:<36}{t.wall_s:>8.1f}{t.cpu_s:>8.1f}{t.per_second:>9.1f}"
              f"{t.resolved:>6}/{t.cells}")
    a, b = results
    print(f"\nA/B wall {a.wall_s / b.wall_s:.2f}, CPU {a.cpu_s / b.cpu_s:.2f}; "
          f"goal: {cells} cells under 60 s: {'met' if a.wall_s < 60 else 'NOT met'}")
    if a.resolved != b.resolved:
        print(f"warning: A resolved {a.resolved} cells, B {b.resolved}", file=sys.stderr)
    if args.save:
        out = REPO / "bench" / "results" / f"pins-{datetime.date.today()}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"cells": cells, "jobs": args.jobs,
                                   "runs": [asdict(t) for t in results]}, indent=2) + "\n",
                       encoding="utf-8")
        print(f"saved {out}")
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
