"""The one subprocess wrapper: output to the result and the log, timeouts, error lines."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from compatmatrix.host import cmd


def test_output_goes_to_the_result_and_the_log(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    script = "import sys; print('out'); print('err', file=sys.stderr)"
    done = cmd.run([sys.executable, "-c", script], log=log, timeout=60)
    assert done.ok and "out" in done.output and "err" in done.output
    text = log.read_text()
    assert text.startswith("$ ") and "out" in text and "[exit 0 after" in text


def test_a_timeout_kills_the_command_and_says_so(tmp_path: Path) -> None:
    done = cmd.run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1)
    assert done.timed_out and not done.ok
    assert "timed out after 1 s" in done.output and done.duration < 30


def test_a_missing_program_is_a_result_not_an_exception() -> None:
    done = cmd.run(["/nonexistent/program"], timeout=10)
    assert done.returncode == 127 and "cannot run" in done.output


def test_error_lines_keep_the_cause_not_the_whole_log() -> None:
    compiler = ("building\nop.cpp:3:1: error: 'x' was not declared\nmore\n"
                "ninja: build stopped: subcommand failed.\n")
    assert cmd.error_lines(compiler, 1) == ("op.cpp:3:1: error: 'x' was not declared",)
    traceback = ("Traceback (most recent call last):\n  File x\n"
                 "ImportError: undefined symbol: _Z1fv\n")
    assert cmd.error_lines(traceback, 1, last=True) == ("ImportError: undefined symbol: _Z1fv",)
    assert cmd.error_lines("a\nb\nc\n", 2) == ("b", "c")  # nothing looks like an error


def test_a_child_started_as_the_run_is_interrupted_is_killed_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C between the check that the run goes on and the child's registration: stop_all
    did not see the child, which must not outlive the run (it once kept an interrupted run
    waiting for a hanging test)."""
    real = subprocess.Popen

    def interrupted_while_starting(*args: Any, **kwargs: Any) -> Any:
        proc = real(*args, **kwargs)
        cmd.stop_all()  # the interrupt lands now, before run() registers proc
        return proc

    monkeypatch.setattr(cmd.subprocess, "Popen", interrupted_while_starting)
    try:
        start = time.monotonic()
        result = cmd.run(["sleep", "60"], timeout=120)
        assert time.monotonic() - start < 30
        assert result.returncode == -signal.SIGKILL
    finally:
        cmd._STOPPED.clear()
