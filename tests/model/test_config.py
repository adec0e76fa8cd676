"""[tool.compatmatrix] matrix in pyproject.toml: the default for --matrix, nox and tox."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compatmatrix.cli import main
from compatmatrix.errors import ProjectFileError
from compatmatrix.model.config import configured_matrix, default_matrix
from tests.conftest import MINIMAL, make_package


def pyproject(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


def test_the_table_names_the_matrix_relative_to_pyproject(tmp_path: Path) -> None:
    root = pyproject(tmp_path, """
        [project]
        name = "x"

        [tool.compatmatrix]
        matrix = "ci/matrix.yaml"
        """)
    assert configured_matrix(root) == root / "ci/matrix.yaml"
    assert default_matrix(root) == root / "ci/matrix.yaml"


@pytest.mark.parametrize("text", [
    None,  # no pyproject.toml
    '[project]\nname = "x"\n',  # no table
    "[tool.black]\nline-length = 100\n",  # another tool's table
    "[tool.compatmatrix]\n",  # the table without the key
])
def test_without_the_key_the_default_is_matrix_yaml(tmp_path: Path, text: str | None) -> None:
    if text is not None:
        pyproject(tmp_path, text)
    assert configured_matrix(tmp_path) is None
    assert default_matrix(tmp_path) == tmp_path / "matrix.yaml"


@pytest.mark.parametrize(("text", "place", "words"), [
    ('[project]\nname = "x"\nversion = 1.0.0\n', ":3:", "invalid TOML"),
    ("[tool]\ncompatmatrix = 3\n", ":1:1:", "must be a table"),
    ("[project]\nname = 'x'\n\n[tool.compatmatrix]\nmatrix = 3\n", ":5:1:",
     "matrix must be the path of the matrix file, not 3"),
    ("[tool.compatmatrix]\n  matrix = ''\n", ":2:3:", "not ''"),
    ("[tool.compatmatrix]\nmatrx = 'm.yaml'\n", ":2:1:",
     "unknown key 'matrx'\n  hint: did you mean 'matrix'?"),
])
def test_mistakes_are_located(tmp_path: Path, text: str, place: str, words: str) -> None:
    pyproject(tmp_path, text)
    with pytest.raises(ProjectFileError) as caught:
        configured_matrix(tmp_path)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "pyproject.toml") + place), message
    assert words in message


def test_the_command_line_defaults_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    make_package(tmp_path / "pkg")
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "compat.yaml").write_text(
        textwrap.dedent(MINIMAL).replace("path: pkg", "path: ../pkg"), encoding="utf-8")
    pyproject(tmp_path, '[tool.compatmatrix]\nmatrix = "ci/compat.yaml"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--json"]) == 0
    assert '"id": "py3.11"' in capsys.readouterr().out
    # --matrix still wins, and a missing file says how to name one
    assert main(["plan", "--matrix", "nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert "nope.yaml:1:1: error: matrix file not found" in err
    assert "[tool.compatmatrix] matrix" in err


def test_a_broken_table_stops_the_command_line_with_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    pyproject(tmp_path, "[tool.compatmatrix]\nmatrix = ['a', 'b']\n")
    monkeypatch.chdir(tmp_path)
    assert main(["plan"]) == 2
    err = capsys.readouterr().err
    assert "pyproject.toml:2:1: error: [tool.compatmatrix] matrix must be" in err
    assert "Traceback" not in err
