"""The tox 4 plugin's hooks (tox >= 4.29; :mod:`compatmatrix.tox.plugin` loads them).

In a project whose tox configuration says ``compatmatrix_matrix = "matrix.yaml"`` (or whose
pyproject.toml has ``[tool.compatmatrix] matrix``), tox lists one environment per cell,
named by its cell id, and compat-matrix, compat-report, compat-gate and compat-ci. Without
either the plugin defines nothing.

How: ``tox_extend_envs`` adds the names (lazily: tox reads them after the core
configuration, where ``tox_add_core_config`` has found and planned the matrix), and an
in-memory loader seeds each environment's configuration: the ``compatmatrix`` runner, no
inheritance from ``[testenv]``, every environment variable passed, and the commands
``python -m compatmatrix ...`` with the Python running tox. The runner
(:class:`CompatmatrixEnv`) creates no virtual environment and builds no package:
compatmatrix makes each cell's environments itself. ``-j`` is computed when tox runs the
environment: the machine's cores divided among the environments tox runs together
(``tox p``), so parallel cells never oversubscribe the machine.

A matrix with a mistake ends tox as compatmatrix ends: its message with file:line:col on
standard error and exit 2, without a traceback.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tox.config.loader.memory import MemoryLoader
from tox.config.main import Config
from tox.config.sets import ConfigSet
from tox.config.types import Command, EnvList
from tox.execute.api import Execute
from tox.execute.local_sub_process import LocalSubProcessExecutor
from tox.plugin import impl
from tox.session.state import State
from tox.tox_env.api import ToxEnv
from tox.tox_env.installer import Installer
from tox.tox_env.package import Package
from tox.tox_env.register import ToxEnvRegister
from tox.tox_env.runner import RunToxEnv

from compatmatrix.errors import CompatError
from compatmatrix.model.config import configured_matrix
from compatmatrix.model.plan import plan_cells
from compatmatrix.model.spec import load_matrix
from compatmatrix.tox.envs import MATRIX_KEY, ToxEnvSpec, cpu_share, env_specs

__all__ = [
    "MATRIX_KEY",
    "RUNNER",
    "CompatmatrixEnv",
    "tox_add_core_config",
    "tox_extend_envs",
    "tox_register_tox_env",
]

RUNNER = "compatmatrix"
_LOG = logging.getLogger(__name__)


class _Names:
    """The environment names this process defines; read by tox after the core configuration
    (``tox_extend_envs`` hands tox this object, which it iterates only then)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.names))


_DEFINED = _Names()


@impl
def tox_register_tox_env(register: ToxEnvRegister) -> None:
    register.add_run_env(CompatmatrixEnv)


@impl
def tox_extend_envs() -> Iterable[str]:
    return _DEFINED


@impl
def tox_add_core_config(core_conf: ConfigSet, state: State) -> None:
    core_conf.add_config(
        keys=[MATRIX_KEY], of_type=str, default="",
        desc="compatmatrix's matrix file (relative to tox_root): one environment per cell, "
             "plus compat-matrix, compat-report, compat-gate and compat-ci")
    _DEFINED.names.clear()
    root = Path(core_conf["tox_root"])
    try:
        path = _matrix_file(str(core_conf[MATRIX_KEY]), root)
        if path is None:
            return  # the project does not use compatmatrix through tox
        cells = plan_cells(load_matrix(path))
    except CompatError as error:  # as the command line reports it: exit 2, no traceback
        print(f"compatmatrix: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    theirs = _project_envs(state.conf, core_conf) & {s.name for s in env_specs(path, cells)}
    for name in sorted(theirs):  # the project's own environment of that name stays its own
        is_cell = any(cell.id == name for cell in cells)
        _LOG.warning("compatmatrix: %s is an environment of %s already, so it is not %s", name,
                     state.conf.src_path.name,
                     f"the cell's; run the cell with: compatmatrix run --cell {name}" if is_cell
                     else "compatmatrix's")
    for spec in env_specs(path, cells, leave_out=theirs):
        state.conf.memory_seed_loaders[spec.name].append(_seed(spec, state, root))
        _DEFINED.names.append(spec.name)
    options = state.conf.options
    if getattr(options, "list_envs", False) and _DEFINED.names:
        # tox 4's -l lists env_list alone, and the cells are not in it (a plain `tox` does
        # not run them): with a matrix, -l lists what -a lists, defaults first
        options.list_envs_all = True


def _matrix_file(configured: str, root: Path) -> Path | None:
    """tox's ``compatmatrix_matrix``, else pyproject.toml's ``[tool.compatmatrix] matrix``."""
    if configured.strip():
        return (root / configured.strip()).resolve()
    found = configured_matrix(root)
    return found.resolve() if found is not None else None


def _project_envs(conf: Config, core_conf: ConfigSet) -> set[str]:
    """The environments the project's tox configuration defines (tox's own discovery)."""
    source = getattr(conf, "_src", None)
    try:
        return set(source.envs(core_conf)) if source is not None else set()
    except Exception:  # an unreadable configuration is tox's to report, later
        return set()


class _Lazy:
    """A configuration value computed when tox reads it (when the environment runs)."""

    def __init__(self, compute: Callable[[], object]) -> None:
        self.compute = compute


class _SeedLoader(MemoryLoader):
    def load_raw(self, key: str, conf: Config | None, env_name: str | None) -> object:
        value = super().load_raw(key, conf, env_name)
        return value.compute() if isinstance(value, _Lazy) else value


def _seed(spec: ToxEnvSpec, state: State, root: Path) -> MemoryLoader:
    python = sys.executable

    def commands() -> list[Command]:
        posargs = state.conf.pos_args(None) or ()
        jobs = _jobs(state) if spec.shares_cpus else 0
        return [Command(argv) for argv in spec.commands(python, jobs, posargs)]

    return _SeedLoader(
        runner=RUNNER,
        base=[],  # nothing from [testenv]: its deps, commands_pre, set_env are the project's
        description=spec.description,
        labels=set(spec.labels),
        depends=EnvList(list(spec.depends)),
        commands=_Lazy(commands),
        pass_env=["*"],  # compatmatrix reads PATH, uv's, pip's and its own variables
        allowlist_externals=[glob.escape(python)],
        change_dir=root,
    )


def _jobs(state: State) -> int:
    """This environment's share of the cores among those tox runs together."""
    options = state.conf.options
    parallel = getattr(options, "parallel", 0)  # tox p: a number or None (all); else absent
    try:
        selected = len(list(state.envs.iter()))
    except Exception:  # the selection is tox's business; alone is the safe assumption
        selected = 1
    return cpu_share(os.cpu_count() or 1, parallel, selected)


class _NoInstaller(Installer[ToxEnv]):
    """compatmatrix installs into the cells' own environments; tox installs nothing."""

    def _register_config(self) -> None:
        pass

    def installed(self) -> list[str]:
        return []

    def install(self, arguments: Any, section: str, of_type: str) -> None:
        pass


class CompatmatrixEnv(RunToxEnv):
    """A tox environment that only runs commands: no virtual environment, no package."""

    def __init__(self, create_args: Any) -> None:
        self._executor: Execute | None = None
        self._installer: _NoInstaller | None = None
        super().__init__(create_args)

    @staticmethod
    def id() -> str:
        return RUNNER

    @property
    def executor(self) -> Execute:
        if self._executor is None:
            self._executor = LocalSubProcessExecutor(self.options.is_colored)
        return self._executor

    @property
    def installer(self) -> _NoInstaller:
        if self._installer is None:
            self._installer = _NoInstaller(self)
        return self._installer

    @property
    def runs_on_platform(self) -> str:
        return sys.platform

    def _register_package_conf(self) -> bool:
        return False  # never a package environment

    @property
    def _external_pkg_tox_env_type(self) -> str:
        raise NotImplementedError  # unreachable: no package

    @property
    def _package_tox_env_type(self) -> str:
        raise NotImplementedError  # unreachable: no package

    def _build_packages(self) -> list[Package]:
        return []
