"""Setup B of bench/matrix.py: a plain nox setup for compat-kernels, as projects write today.

One session per Python x torch; each installs torch from the index, builds the extension from
source against it and runs the suites. bench/matrix.py copies this file beside its copy of
kernels/ and runs it with nox's default backend (virtualenv + pip).
"""

from __future__ import annotations

import nox


@nox.session(python=["3.10", "3.11", "3.12"])
@nox.parametrize("torch", ["2.9.0", "2.13.0"])
def tests(session: nox.Session, torch: str) -> None:
    # setuptools and wheel: virtualenv seeds neither for Python 3.12, and the build below
    # uses the venv's own build tools.
    session.install(f"torch=={torch}", "numpy", "pytest", "pytest-xdist", "setuptools", "wheel")
    session.chdir("kernels")
    # Build against the torch installed above, not a fresh one in an isolated build env.
    session.install("--no-build-isolation", ".")
    session.run("pytest", "-n", "auto", "tests/import", "tests/unit")
