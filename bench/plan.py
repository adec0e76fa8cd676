"""Planning speed: how long plan_cells takes for a matrix of ~10,000 cells.

Run by hand: python bench/plan.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from compatmatrix.model.plan import plan_cells
from compatmatrix.model.spec import load_matrix

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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pkg").mkdir()
        (Path(tmp) / "pkg" / "pyproject.toml").write_text(
            "[project]\nname = \"pkg\"\nversion = \"1\"\n", encoding="utf-8")
        path = Path(tmp) / "matrix.yaml"
        torch = ", ".join(f'"2.{i}.0"' for i in range(30))
        path.write_text(MATRIX.format(torch=torch))
        start = time.perf_counter()
        matrix = load_matrix(path)
        parsed = time.perf_counter()
        best = min(_timed(matrix) for _ in range(5))
        cells = plan_cells(matrix)
    print(f"parse matrix.yaml: {(parsed - start) * 1000:.1f} ms")
    print(f"plan {len(cells)} cells: {best * 1000:.1f} ms (best of 5)")


def _timed(matrix: object) -> float:
    start = time.perf_counter()
    plan_cells(matrix)  # type: ignore[arg-type]
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
