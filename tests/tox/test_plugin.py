"""The entry point tox loads: the hooks where tox can run them, and never a broken tox."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from compatmatrix.model.project import tomllib
from tests.tox.conftest import require_tox

require_tox()

ROOT = Path(__file__).resolve().parents[2]


def test_the_entry_point_and_the_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["entry-points"]["tox"] == {"compatmatrix": "compatmatrix.tox.plugin"}
    assert project["optional-dependencies"]["tox"] == [
        "tox>=4.29,<5; python_version >= '3.11'"]


@pytest.fixture
def reload_plugin() -> Iterator[Any]:
    import compatmatrix.tox.plugin as plugin

    def reload() -> ModuleType:
        return importlib.reload(plugin)

    yield reload
    importlib.reload(plugin)  # as tox >= 4.29 loads it


def test_a_tox_that_has_tox_extend_envs_gets_the_hooks(reload_plugin: Any) -> None:
    from compatmatrix.tox import hooks

    plugin = reload_plugin()
    assert sorted(plugin.__all__) == ["tox_add_core_config", "tox_extend_envs",
                                      "tox_register_tox_env"]
    assert plugin.tox_add_core_config is hooks.tox_add_core_config


class _Core:
    """What the old-tox hook uses of tox's core configuration."""

    def __init__(self, values: dict[str, object]) -> None:
        self.values = values

    def add_config(self, keys: list[str], of_type: type, default: object, desc: str) -> None:
        self.values.setdefault(keys[0], default)

    def __getitem__(self, key: str) -> object:
        return self.values[key]


def test_an_older_tox_4_gets_a_warning_not_a_crash(
        reload_plugin: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    import tox.plugin.spec

    monkeypatch.delattr(tox.plugin.spec, "tox_extend_envs")
    plugin = reload_plugin()
    assert plugin.__all__ == ["tox_add_core_config"]
    with caplog.at_level(logging.WARNING):
        plugin.tox_add_core_config(_Core({"tox_root": tmp_path}), None)
        assert caplog.records == []  # no matrix named: nothing to say
        plugin.tox_add_core_config(
            _Core({"tox_root": tmp_path, "compatmatrix_matrix": "matrix.yaml"}), None)
    assert "too old to list the matrix's cells (tox >= 4.29" in caplog.text


def test_tox_3_gets_nothing(reload_plugin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tox.plugin", None)  # tox 3 has no tox.plugin
    plugin = reload_plugin()
    assert plugin.__all__ == []
