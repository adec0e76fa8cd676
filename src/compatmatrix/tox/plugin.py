"""The tox entry point (``[project.entry-points.tox] compatmatrix``): the hooks of
:mod:`compatmatrix.tox.hooks` when the tox loading it can run them.

tox loads every ``tox`` entry point of its environment, whichever extras were installed, so
this module must never break tox: tox 3 (which reads the same group) gets nothing, and a tox
4 older than 4.29 (no ``tox_extend_envs``) gets a warning when a project points tox at a
matrix, instead of the environments.
"""

from __future__ import annotations

import logging
from pathlib import Path

__all__: list[str] = []

try:
    from tox.plugin import impl
    from tox.plugin import spec as _spec
except ImportError:  # tox 3: the plugin is for tox 4
    pass
else:
    if hasattr(_spec, "tox_extend_envs"):
        from compatmatrix.tox.hooks import (
            tox_add_core_config,
            tox_extend_envs,
            tox_register_tox_env,
        )

        __all__ += ["tox_add_core_config", "tox_extend_envs", "tox_register_tox_env"]
    else:
        from tox.config.sets import ConfigSet
        from tox.session.state import State

        from compatmatrix.tox.envs import MATRIX_KEY

        @impl
        def tox_add_core_config(core_conf: ConfigSet, state: State) -> None:
            core_conf.add_config(keys=[MATRIX_KEY], of_type=str, default="",
                                 desc="compatmatrix's matrix file (needs tox >= 4.29)")
            if str(core_conf[MATRIX_KEY]).strip() or _configured(Path(core_conf["tox_root"])):
                logging.warning("compatmatrix: this tox is too old to list the matrix's "
                                "cells (tox >= 4.29 can: pip install 'compatmatrix[tox]')")

        __all__ += ["tox_add_core_config"]


def _configured(root: Path) -> bool:
    from compatmatrix.errors import CompatError
    from compatmatrix.model.config import configured_matrix

    try:
        return configured_matrix(root) is not None
    except CompatError:
        return True
