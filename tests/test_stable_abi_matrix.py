"""matrix-stable.yaml end to end: one stable-ABI wheel (tests/projects/stable_ext), built
once against the lowest torch of the matrix, installed and tested under PyPI's torch 2.11.0,
2.12.0 and 2.13.0 (CUDA 13.0 builds, GBs of downloads: skipped unless
COMPATMATRIX_STABLE_TESTS=1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("COMPATMATRIX_STABLE_TESTS") != "1",
                       reason="downloads PyPI's CUDA torch 2.11-2.13 (GBs): set "
                              "COMPATMATRIX_STABLE_TESTS=1"),
]

ROOT = Path(__file__).resolve().parent.parent
TORCHES = ("2.11.0", "2.12.0", "2.13.0")


def test_one_stable_wheel_passes_under_every_torch(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "compatmatrix", "run", "--matrix", str(ROOT / "matrix-stable.yaml"),
         "--workdir", str(tmp_path / "work"), "-j", "2"],
        capture_output=True, text=True, timeout=3600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = {torch: json.loads((tmp_path / "work" / "results" /
                                  f"py3.11-torch{torch}-cu130.json").read_text())
               for torch in TORCHES}
    assert {r["status"] for r in records.values()} == {"passed"}
    assert {r["build_key"] for r in records.values()} == {"abi3-torchstable-cu13"}
    # one wheel, built once (against the lowest torch), reused by the other cells
    assert len({r["wheel"] for r in records.values()}) == 1
    assert sorted(r["wheel_reused"] for r in records.values()) == [False, True, True]
    assert {r["built_with_torch"] for r in records.values()} == {"2.11.0"}
    assert [r["running_torch"].split("+")[0] for r in records.values()] == list(TORCHES)
    for record in records.values():
        abi = record["audit"]["torch_abi"]
        assert (abi["verdict"], abi["min_torch"]) == ("torch-stable", "2.10.0")
        assert abi["source"] == "torch-abi-audit 0.3.0"
        assert record["identity"]["facts"]["torch_abi"] == "stable"
        assert record["suites"]["unit"]["passed"] >= 8


def test_a_published_stable_abi_release_under_every_torch_its_shims_admit(
        tmp_path: Path) -> None:
    """examples/torchaudio: torchaudio 2.11.0 from PyPI, nothing built, under torch 2.11 to
    2.13. Its libraries are torch-stable (minimum 2.11.0) and its checks pass under each, and
    each cell fails at audit all the same: the wheel requires no torch, so it admits torches
    whose shims it lacks."""
    folder = ROOT / "examples" / "torchaudio"
    done = subprocess.run(
        [sys.executable, "-m", "compatmatrix", "run", "--workdir", str(tmp_path / "work"),
         "-j", "2"], cwd=folder, capture_output=True, text=True, timeout=3600,
        stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    records = [json.loads((tmp_path / "work" / "results" /
                           f"py3.12-torch{torch}-cu130.json").read_text()) for torch in TORCHES]
    assert len({r["artifact"]["sha256"] for r in records}) == 1
    for record in records:
        assert record["artifact"]["origin"] == "published"
        assert "build" not in record["durations"]
        abi = record["audit"]["torch_abi"]
        assert (abi["verdict"], abi["min_torch"]) == ("torch-stable", "2.11.0")
        assert record["suites"]["functional"]["passed"] == 3
        assert (record["status"], record["stage"]) == ("failed", "audit")
        assert "require torch>=2.11" in record["reason"]
