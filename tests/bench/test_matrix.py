"""bench/matrix.py's own logic, without running anything: the peers' files it writes, how it
reads their logs, and the profile, critical path and floor it computes from A's records."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from compatmatrix.model.project import tomllib

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_matrix", ROOT / "bench" / "matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_matrix"] = module
    spec.loader.exec_module(module)
    return module


bench = _load()
FULL = bench.Grid("full", *bench.CELLS["full"])


def record(cell: str, key: str, built: bool = True, **durations: float) -> dict[str, Any]:
    return {"cell": cell, "build_key": key, "status": "passed", "durations": durations,
            "reused": False, "setup_reused": False, "wheel_reused": not built}


# two build keys; the second cell of each key waited for the first one's build
COLD = [
    record("py3.11-t1", "abi3-t1", metadata=10, resolve=1, build=80, audit=0.1, install=1,
           identity=3, **{"suite:import": 12, "suite:unit": 34}),
    record("py3.12-t1", "abi3-t1", built=False, resolve=1, build=0.1, audit=0.1, install=1,
           identity=3, **{"suite:import": 11, "suite:unit": 40}),
    record("py3.11-t2", "abi3-t2", metadata=9, resolve=1, build=70, audit=0.1, install=1,
           identity=3, **{"suite:import": 12, "suite:unit": 33}),
    record("py3.12-t2", "abi3-t2", built=False, resolve=1, build=0.1, audit=0.1, install=1,
           identity=3, **{"suite:import": 12, "suite:unit": 35}),
]


def test_the_floor_is_one_build_per_key_and_the_suites_on_the_lanes() -> None:
    found = bench.floor(COLD, lanes=2)
    assert found.builds == 150 and found.suites == 189
    assert found.chain == 80 + 51  # the longest build, then the suites of a cell of its key
    assert found.seconds == pytest.approx((150 + 189) / 2)
    assert bench.floor(COLD, lanes=1).seconds == 339
    assert bench.floor(COLD, lanes=4).seconds == 131  # no shorter than that chain


def test_reused_records_and_setups_build_nothing() -> None:
    rerun = [{**r, "reused": True} for r in COLD]
    assert bench.floor(rerun, lanes=2).seconds == 0
    assert bench.stage_profile(rerun) == {}
    edited = [{**r, "setup_reused": True, "durations": {"resolve": 1, "suite:unit": 30}}
              for r in COLD]
    found = bench.floor(edited, lanes=2)
    assert (found.builds, found.suites, found.seconds) == (0, 120, 60)
    assert bench.critical_path(edited).seconds == 31


def test_the_profile_sums_each_stage_over_the_cells_in_stage_order() -> None:
    profile = bench.stage_profile(COLD)
    assert list(profile)[:6] == ["metadata", "resolve", "build", "audit", "install", "identity"]
    assert profile["build"] == pytest.approx(150.2) and profile["identity"] == 12
    assert profile["suite:unit"] == 142


def test_the_critical_path_waits_for_the_build_of_its_key() -> None:
    path = bench.critical_path(COLD)
    assert path is not None and path.cell == "py3.12-t1"
    assert path.stages["waiting for py3.11-t1's build"] == 91  # metadata, resolve, build
    assert path.seconds == pytest.approx(91 + 1 + 0.1 + 0.1 + 1 + 3 + 51)


def test_noxfile_c_is_bs_with_the_uv_backend() -> None:
    template = (ROOT / "bench" / "plain_noxfile.py").read_text()
    small = bench.Grid("small", *bench.CELLS["small"])
    b, c = bench.noxfile(template, small, uv=False), bench.noxfile(template, small, uv=True)
    assert '@nox.session(python=["3.11", "3.12"])' in b
    assert '@nox.parametrize("torch", ["2.13.0"])' in b
    assert "\nnox.options.default_venv_backend" not in b
    assert c.replace('\nnox.options.default_venv_backend = "uv|virtualenv"\n', "", 1) == b


def test_tox_toml_builds_each_wheel_against_the_cells_torch(tmp_path: Path) -> None:
    (tmp_path / "kernels").mkdir()
    found = {p: Path(f"/py/python{p}") for p in FULL.pythons}
    bench.write_tox(tmp_path, FULL, found)
    config = tomllib.loads((tmp_path / "kernels" / "tox.toml").read_text())
    assert config["env_list"] == [bench.tox_env(p, t) for p in FULL.pythons
                                  for t in FULL.torches]
    assert config["env_run_base"]["package"] == "wheel"
    env = config["env"]["py310-torch2120"]
    assert env["deps"][0] == "torch==2.12.0" and env["base_python"] == ["/py/python3.10"]
    build = config["env"][env["wheel_build_env"]]
    assert build["base_python"] == ["/py/python3.10"]
    constraint = Path(build["set_env"]["UV_CONSTRAINT"])
    assert constraint.read_text() == "torch==2.12.0\n"
    assert "CCACHE_*" in config["env_pkg_base"]["pass_env"]


def test_tox_and_nox_logs_count_green_environments(tmp_path: Path) -> None:
    log = tmp_path / "tox.log"
    log.write_text("  py311-torch2130: OK (12.34=setup[1]+cmd[11] seconds)\n"
                   "  py312-torch2130: FAIL code 1 (3.00 seconds)\n"
                   "  evaluation failed :( (15.5 seconds)\n")
    ok, note = bench.check_tox(1, log, tmp_path / ".tox", 2)
    assert not ok and "1/2 environments successful" in note
    log.write_text("nox > Session tests-3.11(torch='2.13.0') was successful in 40 seconds\n")
    ok, note = bench.check_nox(0, log, tmp_path / ".nox", 1)
    assert ok and "1/1 sessions successful" in note


def test_a_venv_built_without_cuda_kernels_is_not_green(tmp_path: Path) -> None:
    info = tmp_path / ".nox" / "s1" / "lib" / "python3.11" / "site-packages" / "compat_kernels"
    info.mkdir(parents=True)
    (info / "_build_info.py").write_text("CUDA_VERSION = '13.0'\nCUDA_ARCHS = None\n")
    log = tmp_path / "nox.log"
    log.write_text("Session tests-3.11 was successful\n")
    ok, note = bench.check_nox(0, log, tmp_path / ".nox", 1)
    assert not ok and "no CUDA kernels built in s1" in note


def test_peers_and_scenarios_are_chosen_by_name() -> None:
    assert bench._peers("all") == ("B", "C", "D")
    assert bench._peers("A,c") == ("C",)
    assert bench._scenarios("test edit") == ("cold", "test edit")
    assert bench._scenarios("rerun -r") == ("cold", "rerun", "rerun -r")
    with pytest.raises(SystemExit):
        bench._peers("E")
