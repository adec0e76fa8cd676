"""Planning speed: how long plan_cells takes for matrices of ~10,000 cells.

Run by hand: python bench/plan.py [--repeat N]

Two matrices:

- ``11,201 cells``: 5 Pythons x 30 torch releases x 5 CUDA variants x 8 vLLM x 2
  transformers, one exclude entry with a specifier, one include;
- ``10,000 cells, 1,000 excludes``: 10 Pythons x 40 torch x 5 CUDA variants x 5 vLLM
  (10,000 combinations) minus 1,000 exclude entries of every kind planning knows: exact
  values over three or four axes (most of them), torch and python specifiers, CUDA globs,
  and entries that match nothing.

Prints the time to parse matrix.yaml and the best of N plans (wall and CPU), per matrix.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from compatmatrix.model.plan import plan_cells
from compatmatrix.model.spec import Matrix, load_matrix

MATRIX = """
version: 1
project: {{path: pkg, import: pkg, abi3: ">=2.6"}}
axes:
  python: ["3.9", "3.10", "3.11", "3.12", "3.13"]
  torch: [{torch}]
  cuda: [cpu, cu126, cu128, cu129, cu130]
  vllm: [none, "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0"]
  transformers: [none, "4.50.0"]
exclude:
  - {{torch: "<2.10", cuda: cu130}}
include:
  - {{python: "3.13", torch: "2.13.0", cuda: cu130, vllm: "0.30.0"}}
"""

EXCLUDES_PYTHONS = [f"3.{i}" for i in range(5, 15)]
EXCLUDES_TORCHES = [f"2.{i}.{p}" for i in range(20) for p in (0, 1)]
EXCLUDES_CUDAS = ["cpu", "cu126", "cu128", "cu129", "cu130"]
EXCLUDES_VLLMS = ["none", "0.1.0", "0.2.0", "0.3.0", "0.4.0"]


def excludes_matrix(entries: int = 1000, seed: int = 16) -> str:
    """10,000 combinations and ``entries`` exclude entries (deterministic)."""
    rng = random.Random(seed)
    lines = []
    for number in range(entries):
        kind = number % 10
        entry: dict[str, str] = {}
        if kind < 6:  # exact values: python, torch, and a variant or a vLLM or both
            axes = ["python", "torch", *rng.sample(["cuda", "vllm"], rng.randint(1, 2))]
            choices = {"python": EXCLUDES_PYTHONS, "torch": EXCLUDES_TORCHES,
                       "cuda": EXCLUDES_CUDAS, "vllm": EXCLUDES_VLLMS}
            entry = {axis: rng.choice(choices[axis]) for axis in axes}
        elif kind == 6:  # a torch range with a Python and a variant
            low = rng.randrange(20)
            entry = {"torch": f">=2.{low},<2.{low}.1", "python": rng.choice(EXCLUDES_PYTHONS),
                     "cuda": rng.choice(EXCLUDES_CUDAS)}
        elif kind == 7:  # a python specifier with a torch release and a variant
            entry = {"python": f">=3.{rng.randrange(10, 15)}",
                     "torch": rng.choice(EXCLUDES_TORCHES), "cuda": rng.choice(EXCLUDES_CUDAS)}
        elif kind == 8:  # a glob over variants with the other three axes
            entry = {"cuda": rng.choice(["cu12*", "cu13?", "cu1[23]*"]),
                     "vllm": rng.choice(EXCLUDES_VLLMS),
                     "torch": rng.choice(EXCLUDES_TORCHES),
                     "python": rng.choice(EXCLUDES_PYTHONS)}
        else:  # a value no cell has: matches nothing
            entry = {"torch": f"3.{number}.0", "python": rng.choice(EXCLUDES_PYTHONS)}
        lines.append("  - {" + ", ".join(f'{k}: "{v}"' for k, v in entry.items()) + "}\n")
    return (
        "version: 1\n"
        'project: {path: pkg, import: pkg, abi3: ">=2.6"}\n'
        "axes:\n"
        f"  python: [{', '.join(repr(p) for p in EXCLUDES_PYTHONS)}]\n"
        f"  torch: [{', '.join(repr(t) for t in EXCLUDES_TORCHES)}]\n"
        f"  cuda: [{', '.join(EXCLUDES_CUDAS)}]\n"
        f"  vllm: [{', '.join(repr(v) for v in EXCLUDES_VLLMS)}]\n"
        "exclude:\n" + "".join(lines)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="plans per matrix (best kept)")
    args = parser.parse_args()
    torch = ", ".join(f'"2.{i}.0"' for i in range(30))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pkg").mkdir()
        (Path(tmp) / "pkg" / "pyproject.toml").write_text(
            "[project]\nname = \"pkg\"\nversion = \"1\"\n", encoding="utf-8")
        for title, text in (("11,201 cells", MATRIX.format(torch=torch)),
                            ("10,000 cells, 1,000 excludes", excludes_matrix())):
            path = Path(tmp) / "matrix.yaml"
            path.write_text(text, encoding="utf-8")
            start = time.perf_counter()
            matrix = load_matrix(path)
            parsed = time.perf_counter() - start
            wall, cpu = zip(*(_timed(matrix) for _ in range(args.repeat)), strict=True)
            cells = plan_cells(matrix)
            print(f"{title}: parse matrix.yaml {parsed * 1000:.1f} ms; plan {len(cells)} "
                  f"cells from {len(matrix.exclude)} exclude entries: {min(wall) * 1000:.1f} ms "
                  f"wall, {min(cpu) * 1000:.1f} ms CPU (best of {args.repeat})", flush=True)


def _timed(matrix: Matrix) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    plan_cells(matrix)
    return time.perf_counter() - start, time.process_time() - cpu


if __name__ == "__main__":
    main()
