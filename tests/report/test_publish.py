"""publish against a local bare repository, with a concurrent push to the same branch."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from compatmatrix.report.model import Report
from compatmatrix.report.publish import change_summary, publish

ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=ENV).stdout.strip()


def report(**statuses: str) -> Report:
    return Report.from_json({"schema": 1, "axes": ["python"], "cells": [
        {"id": k, "axes": {"python": "3.11"}, "status": v} for k, v in statuses.items()]})


def setup_repos(tmp_path: Path) -> tuple[Path, Path, Path]:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(bare))
    ours = tmp_path / "ours"
    git(tmp_path, "clone", "--quiet", str(bare), str(ours))
    (ours / "README").write_text("project\n")
    git(ours, "add", "README")
    git(ours, "commit", "--quiet", "-m", "start")
    git(ours, "push", "--quiet", "origin", "HEAD:main")
    theirs = tmp_path / "theirs"
    git(tmp_path, "clone", "--quiet", str(bare), str(theirs))
    return bare, ours, theirs


def writer(out: Path, content: str, current: Report):
    def regenerate() -> Report:
        out.mkdir(exist_ok=True)
        (out / "compatibility.md").write_text(content)
        # a resolve-only run's table beside it: never the compatibility report
        (out / "pins.md").write_text("# Which pins install together\n")
        return current
    return regenerate


def test_concurrent_push_ends_with_one_report_commit(tmp_path: Path) -> None:
    bare, ours, theirs = setup_repos(tmp_path)
    # someone else pushes to main after our checkout
    (theirs / "other.txt").write_text("theirs\n")
    git(theirs, "add", "other.txt")
    git(theirs, "commit", "--quiet", "-m", "their change")
    git(theirs, "push", "--quiet", "origin", "HEAD:main")
    # an unrelated local edit must neither be committed nor lost
    (ours / "README").write_text("local edit\n")

    result = publish(repo=ours, out=ours / "reports",
                     regenerate=writer(ours / "reports", "# report\n", report(a="passed")),
                     remote="origin", branch="main", retries=3, env=ENV)
    assert result.committed and result.attempts == 2
    log = git(bare, "log", "--format=%s", "main").splitlines()
    assert log == ["compat: first report, 1 cells [skip ci]", "their change", "start"]
    files = git(bare, "show", "--name-only", "--format=", "main").splitlines()
    assert files == ["reports/compatibility.md"]
    assert (ours / "README").read_text() == "local edit\n"

    again = publish(repo=ours, out=ours / "reports",
                    regenerate=writer(ours / "reports", "# report\n", report(a="passed")),
                    remote="origin", branch="main", retries=3, env=ENV)
    assert not again.committed
    assert len(git(bare, "log", "--format=%s", "main").splitlines()) == 3


def test_change_summary_counts_what_changed() -> None:
    before = report(a="passed", b="failed", c="passed")
    after = report(a="failed", b="passed", c="failed", d="passed")
    assert change_summary(before, after) == (
        "compat: 2 cells newly failing, 1 fixed, 1 new [skip ci]")
    assert change_summary(after, after) == "compat: results updated [skip ci]"
