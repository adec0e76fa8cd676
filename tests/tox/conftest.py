from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys

import pytest


def require_tox(*, plugin: bool = False) -> None:
    """Skip the calling module where tox 4 cannot run (Python < 3.11) or is not installed,
    and (``plugin``) where compatmatrix's entry point is not installed; in CI (.ci/run sets
    CI) a missing tox or entry point on Python >= 3.11 fails instead: the tests must run."""
    if sys.version_info < (3, 11):
        pytest.skip("tox 4 needs Python >= 3.11", allow_module_level=True)
    problem = ""
    if importlib.util.find_spec("tox") is None:
        problem = "tox is not installed (pip install -e '.[test]')"
    elif plugin and not any(ep.value == "compatmatrix.tox.plugin"
                            for ep in importlib.metadata.entry_points(group="tox")):
        problem = ("compatmatrix is not installed, so tox cannot find its plugin "
                   "(pip install -e '.[test]')")
    if problem and os.environ.get("CI"):
        pytest.fail(problem, pytrace=False)
    if problem:
        pytest.skip(problem, allow_module_level=True)
