"""Setups B and C of bench/matrix.py: a plain nox setup for compat-kernels, as projects write it.

One session per Python x torch; each installs torch from the index, builds the extension from
source against it (no build isolation: an isolated build would fetch the newest torch, not
the session's) and runs the suites. bench/matrix.py copies this file beside its copy of
kernels/, with the Pythons and torch releases of the cells it measures: as it is for B (nox's
default backend, virtualenv + pip), and with ``nox.options.default_venv_backend =
"uv|virtualenv"`` added after ``import nox`` for C (venvs made and packages installed by uv,
from uv's cache).
"""

from __future__ import annotations

import glob
import os

import nox


@nox.session(python=["3.10", "3.11", "3.12"])
@nox.parametrize("torch", ["2.12.0", "2.13.0"])
def tests(session: nox.Session, torch: str) -> None:
    # setuptools and wheel: virtualenv seeds neither for Python 3.12 (and uv seeds nothing),
    # and the build below uses the venv's own build tools.
    session.install(f"torch=={torch}", "numpy", "pytest", "pytest-xdist", "setuptools", "wheel")
    # torch's CUDA headers include those of its nvidia-* dependencies (cuBLAS, cuSPARSE,
    # CCCL ...), which sit in the venv rather than in the toolkit
    site = session.run("python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                       silent=True)
    includes = sorted(glob.glob(os.path.join(str(site).strip(), "nvidia", "*", "include")))
    includes += [d + "/cccl" for d in includes if os.path.isdir(d + "/cccl")]
    session.env["CPATH"] = os.pathsep.join(includes)
    session.chdir("kernels")
    # Build against the torch installed above, not a fresh one in an isolated build env.
    session.install("--no-build-isolation", ".")
    session.run("pytest", "-n", "auto", "tests/import", "tests/unit")
