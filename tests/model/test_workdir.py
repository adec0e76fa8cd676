"""The work directory's layout, and where work and reports go by default."""

from __future__ import annotations

from pathlib import Path

from compatmatrix.model.workdir import WorkDir, report_dir, work_dir


def test_every_output_has_its_place(tmp_path: Path) -> None:
    work = WorkDir(tmp_path)
    assert work.record("c") == tmp_path / "results" / "c.json"
    assert work.log("c", "build") == tmp_path / "logs" / "c" / "build.log"
    assert work.junit("c", "unit") == tmp_path / "junit" / "c" / "unit.xml"
    assert work.lock("c") == tmp_path / "locks" / "c.txt"
    assert work.env("c") == tmp_path / "envs" / "c"
    assert work.metadata("k", "d") == tmp_path / "metadata" / "k" / "d.json"
    assert work.neutral("c").is_dir() and not any(work.neutral("c").iterdir())


def test_defaults_follow_the_option_then_the_variable_then_the_matrix(tmp_path: Path) -> None:
    assert work_dir(tmp_path, {}) == tmp_path / ".compatmatrix"
    assert work_dir(tmp_path, {"COMPATMATRIX_WORKDIR": "/w"}) == Path("/w")
    assert work_dir(tmp_path, {"COMPATMATRIX_WORKDIR": "/w"}, Path("/x")) == Path("/x")
    assert report_dir(tmp_path, {}) == tmp_path / "reports"
    assert report_dir(tmp_path, {"COMPATMATRIX_REPORTS": "/r"}) == Path("/r")
