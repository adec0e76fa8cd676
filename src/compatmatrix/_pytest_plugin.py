"""A pytest plugin that compatmatrix loads into a cell's pytest (``-p``) to count honestly.

The JUnit file says what was reported, not what should have been: a worker that crashes,
an ``os._exit`` in a test or a segfault leaves tests out of it without a trace. This plugin
writes what was collected (``collected.txt``, one node id per line) and which tests started
and finished (``progress.txt``), so that the suite runner can compare them with the JUnit.

It runs inside the cell's environment, where compatmatrix is not installed: it is copied
there under another module name and must import nothing but pytest and the standard library.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

import pytest

COLLECTED = "collected.txt"
PROGRESS = "progress.txt"
IMPORTED = "imported-"  # + process name + ".txt": where the package under test came from
DESELECTED = "deselected-"  # + process name + ".txt": how many tests -m/-k deselected
_OPTION = "--compatmatrix-state"
_IMPORT_OPTION = "--compatmatrix-import"


def _strip_cwd_from_path() -> None:
    # ``python -m pytest`` puts the working directory (the project's root) first on sys.path,
    # and a source folder there would shadow the installed wheel that the cell is about.
    # This runs at import, before xdist freezes sys.path for its workers.
    if sys.path and not getattr(sys.flags, "safe_path", False):
        first = sys.path[0]
        if first in ("", ".") or os.path.abspath(first) == os.getcwd():
            del sys.path[0]


_strip_cwd_from_path()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(_OPTION, default=None, help="folder where compatmatrix records the run")
    parser.addoption(_IMPORT_OPTION, default=None,
                     help="import name of the package under test: record where it came from")


def pytest_deselected(items: list[pytest.Item]) -> None:
    # Every process that collects (the controller, or each xdist worker) counts what -m/-k
    # deselected: a suite whose every test was deselected ran nothing.
    if not items:
        return
    config = items[0].config
    state = config.getoption(_OPTION)
    if state:
        worker = getattr(config, "workerinput", {}).get("workerid", "main")
        path = Path(state) / f"{DESELECTED}{worker}.txt"
        previous = path.read_text(encoding="utf-8").strip() if path.is_file() else "0"
        count = int(previous) if previous.isdigit() else 0
        path.write_text(f"{count + len(items)}\n", encoding="utf-8")


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Every process (the xdist controller and each worker) says where the package under test
    # was imported from, if a test imported it: the runner checks it is the cell's venv.
    config = session.config
    state, name = config.getoption(_OPTION), config.getoption(_IMPORT_OPTION)
    module = sys.modules.get(name) if state and name else None
    if module is None:
        return
    where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), "")
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    path = Path(state) / f"{IMPORTED}{worker}.txt"
    path.write_text(f"{os.path.abspath(where) if where else ''}\n", encoding="utf-8")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    state = config.getoption(_OPTION)
    # With xdist, the controller sees every worker's collection and progress: only it writes.
    if state and not hasattr(config, "workerinput"):
        Path(state).mkdir(parents=True, exist_ok=True)
        config.pluginmanager.register(_Recorder(Path(state)), "compatmatrix-recorder")


class _Recorder:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.collected: dict[str, None] = {}  # ordered and unique
        # Line-buffered: a test that kills the process still leaves its "start" line.
        self.progress: IO[str] = (state / PROGRESS).open("a", encoding="utf-8", buffering=1)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._add_collected([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        self._add_collected(list(ids))

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.progress.write(f"start\t{nodeid}\n")

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.progress.write(f"end\t{nodeid}\n")

    def pytest_unconfigure(self) -> None:
        self.progress.close()

    def _add_collected(self, ids: list[str]) -> None:
        self.collected.update(dict.fromkeys(ids))
        tmp = self.state / (COLLECTED + ".tmp")
        tmp.write_text("".join(f"{nodeid}\n" for nodeid in self.collected), encoding="utf-8")
        os.replace(tmp, self.state / COLLECTED)
