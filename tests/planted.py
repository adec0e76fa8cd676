"""Tiny projects that plant one known failure, for the cell pipeline's integration tests.

Each is a plain CPython C extension (a build takes a second or two) whose planted failure
only shows when it is built or run on Python 3.12, so one matrix holds a good cell (3.11)
beside the planted one (3.12) and a test can check that the good cell's record is intact.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

EXT_C = r"""
#include <Python.h>
#include <signal.h>
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, NULL};
#if defined(PLANT_BUILD_ERROR) && PY_MINOR_VERSION == 12
#error "planted build error: this extension does not compile on Python 3.12"
#endif
#ifdef PLANT_C10
/* c10::UndefinedTensorImpl::_singleton: code that reaches into torch's C++ API, whose ABI
   holds for one torch minor only (the audit classifies the library torch-unstable) */
extern char _ZN3c1019UndefinedTensorImpl10_singletonE;
void *volatile planted_c10;
#endif
PyMODINIT_FUNC PyInit__ext(void) {
#ifdef PLANT_C10
    planted_c10 = &_ZN3c1019UndefinedTensorImpl10_singletonE;
#endif
#if defined(PLANT_SEGFAULT) && PY_MINOR_VERSION == 12
    raise(SIGSEGV);
#endif
    return PyModule_Create(&module);
}
"""

SETUP_PY = """
import importlib.util, sys
from setuptools import Extension, setup

PLANT = {plant!r}
on_312 = sys.version_info[:2] == (3, 12)
limited = not (PLANT == "abi3-mismatch" and on_312)
macros = {{"segfault": [("PLANT_SEGFAULT", "1")],
          "build-error": [("PLANT_BUILD_ERROR", "1")]}}.get(PLANT, [])
if limited:
    macros.append(("Py_LIMITED_API", "0x03090000"))
requires = []
if importlib.util.find_spec("torch") is not None:
    import torch
    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    bounded = f"torch>={{major}}.{{minor}},<{{major}}.{{minor + 1}}"
    requires = ["torch"] if PLANT == "torch-unbounded" else [bounded]
link = {{}}
if PLANT == "torch-unbounded" and importlib.util.find_spec("torch") is not None:
    import os
    import torch
    macros.append(("PLANT_C10", "1"))  # built against this torch's C++ API
    link = {{"library_dirs": [os.path.join(os.path.dirname(torch.__file__), "lib")],
             "libraries": ["c10"]}}
setup(
    name="planted", version="1.0", packages=["planted"],
    ext_modules=[Extension("planted._ext", ["planted/_ext.c"], define_macros=macros,
                           py_limited_api=limited, **link)],
    options={{"bdist_wheel": {{"py_limited_api": "cp39"}}}},
    install_requires=requires,
)
"""

TESTS_PY = """
import os, signal, sys, time

import planted._ext

PLANT = {plant!r}
ON_312 = sys.version_info[:2] == (3, 12)


def test_imports():
    assert planted._ext.__name__ == "planted._ext"


def test_planted():
    if ON_312 and (PLANT == "hang" or os.environ.get("PLANTED_HANG")):
        time.sleep(600)
    if ON_312 and PLANT == "worker-crash":
        os.kill(os.getpid(), signal.SIGKILL)


def test_more():
    assert sum(range(4)) == 6
"""


def make_project(root: Path, plant: str, matrix_body: str) -> Path:
    """Write the project and its matrix.yaml under ``root``; returns the matrix path."""
    pkg = root / "proj"
    (pkg / "planted").mkdir(parents=True)
    (pkg / "checks").mkdir()
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=64", "wheel"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "planted"
        version = "1.0"
        dynamic = ["dependencies"]

        [tool.pytest.ini_options]
        addopts = ["--import-mode=importlib"]
        """))
    (pkg / "setup.py").write_text(SETUP_PY.format(plant=plant))
    (pkg / "planted" / "__init__.py").write_text(
        "try:\n    import torch  # noqa: F401  (loads libc10.so, which _ext may need)\n"
        "except ImportError:\n    pass\n" if plant == "torch-unbounded" else "")
    (pkg / "planted" / "_ext.c").write_text(EXT_C)
    (pkg / "checks" / "test_planted.py").write_text(TESTS_PY.format(plant=plant))
    matrix = root / "matrix.yaml"
    body = textwrap.dedent(matrix_body).lstrip()
    indexes = "" if "indexes:" in body else "indexes: {find_links: [pip-config]}\n"
    matrix.write_text("version: 1\nproject: {path: proj, import: planted._ext}\n"
                      + indexes + body)
    return matrix
