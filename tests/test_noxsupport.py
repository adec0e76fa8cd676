"""The nox support: sessions registered from the matrix the project names."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import nox.registry
import pytest

from compatmatrix.noxsupport import register_cell_sessions
from tests.conftest import MINIMAL, make_package


@pytest.fixture
def registry() -> Iterator[None]:
    before = nox.registry.get()
    nox.registry.reset()
    yield
    nox.registry.reset()
    nox.registry._REGISTRY.update(before)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("registry")
def test_without_a_file_the_pyproject_table_names_the_matrix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_package(tmp_path / "pkg")
    (tmp_path / "compat").mkdir()
    (tmp_path / "compat" / "cells.yaml").write_text(
        textwrap.dedent(MINIMAL).replace("path: pkg", "path: ../pkg"), encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text('[tool.compatmatrix]\nmatrix = "compat/cells.yaml"\n',
                                             encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # nox runs a noxfile from its folder
    matrix = register_cell_sessions()
    assert matrix.path == tmp_path / "compat" / "cells.yaml"
    assert set(nox.registry.get()) == {"py3.11", "matrix", "report", "gate", "ci"}


@pytest.mark.usefixtures("registry")
def test_a_bad_matrix_exits_2_with_its_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "matrix.yaml").write_text("version: 1\nproject: [\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as caught:
        register_cell_sessions()
    assert caught.value.code == 2
    assert "matrix.yaml:" in capsys.readouterr().err
