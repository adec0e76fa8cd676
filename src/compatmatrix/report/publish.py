"""Commit the report back: only ``reports/``, only when it changed, retried on a race.

Used by CI on the default branch. A rejected push (someone pushed meanwhile) fetches the
branch, moves to it (``git reset --keep``: local changes outside the report survive, and a
conflict stops rather than overwrites), regenerates the report on top, and tries again, a
bounded number of times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from compatmatrix.errors import CompatError, PublishError
from compatmatrix.host import cmd as _cmd
from compatmatrix.report.model import REPORT_FILES, Report, parse_report

__all__ = ["PublishResult", "change_summary", "committed_file", "current_branch",
           "git_toplevel", "publish"]

SKIP_CI = "[skip ci]"  # honoured by GitHub Actions and Buildkite alike
_IDENTITY = {"GIT_AUTHOR_NAME": "compatmatrix", "GIT_COMMITTER_NAME": "compatmatrix",
             "GIT_AUTHOR_EMAIL": "compatmatrix@users.noreply.github.com",
             "GIT_COMMITTER_EMAIL": "compatmatrix@users.noreply.github.com"}


@dataclass(frozen=True)
class PublishResult:
    committed: bool
    message: str
    attempts: int




def publish(*, repo: Path, out: Path, regenerate: Callable[[], Report], remote: str,
            branch: str, retries: int, env: Mapping[str, str]) -> PublishResult:
    git = _Git(repo, env)
    rel = out.resolve().relative_to(repo.resolve()).as_posix()
    for attempt in range(1, retries + 2):
        report = regenerate()
        if not git.changed(rel):
            return PublishResult(False, "the report did not change; nothing to commit",
                                 attempt)
        message = change_summary(git.committed_report(rel), report)
        git.commit_only(rel, message)
        if git.push(remote, branch):
            return PublishResult(True, message, attempt)
        git.move_to_remote(remote, branch)
    raise PublishError(f"push to {remote}/{branch} was rejected {retries + 1} times; "
                       "someone else keeps pushing: try again later")


def change_summary(before: Report | None, after: Report) -> str:
    """e.g. ``compat: 2 cells newly failing, 1 fixed [skip ci]``."""
    old = {c.id: c.status for c in before.cells} if before is not None else {}
    new = {c.id: c.status for c in after.cells}
    failing = sum(old.get(c) == "passed" and s != "passed" for c, s in new.items())
    fixed = sum(c in old and old[c] != "passed" and s == "passed" for c, s in new.items())
    added = sum(c not in old for c in new) if before is not None else 0
    removed = sum(c not in new for c in old)
    parts = [f"{n} {'cell' if n == 1 else 'cells'} {what}" if i == 0 else f"{n} {what}"
             for i, (n, what) in enumerate(
                 (n, w) for n, w in ((failing, "newly failing"), (fixed, "fixed"),
                                     (added, "new"), (removed, "removed")) if n)]
    if before is None:
        parts = [f"first report, {len(new)} cells"]
    summary = ", ".join(parts) if parts else "results updated"
    return f"compat: {summary} {SKIP_CI}"


def git_toplevel(path: Path) -> Path:
    done = _cmd.run(["git", "rev-parse", "--show-toplevel"], cwd=path, timeout=30)
    if not done.ok:
        raise PublishError(f"{path} is not inside a git repository")
    return Path(done.output.strip())


def current_branch(repo: Path) -> str:
    done = _cmd.run(["git", "symbolic-ref", "--quiet", "--short", "HEAD"], cwd=repo, timeout=30)
    if not done.ok:
        raise PublishError("HEAD is detached: pass --branch (e.g. --branch main)")
    return done.output.strip()


def committed_file(path: Path) -> str | None:
    """``path``'s content at git HEAD, or None (no repository, or not committed)."""
    if not path.parent.is_dir():
        return None
    done = _cmd.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent, timeout=30)
    return done.output if done.ok else None


class _Git:
    def __init__(self, repo: Path, env: Mapping[str, str]) -> None:
        self.repo = repo
        self.env = {**_IDENTITY, **env} if not self._configured(repo, env) else dict(env)

    @staticmethod
    def _configured(repo: Path, env: Mapping[str, str]) -> bool:
        done = _cmd.run(["git", "config", "user.email"], cwd=repo, env=env, timeout=30)
        return done.ok and bool(done.output.strip())

    def run(self, *args: str, check: bool = True) -> _cmd.CommandResult:
        result = _cmd.run(["git", *args], cwd=self.repo, env=self.env, timeout=300)
        if check and not result.ok:
            raise PublishError(f"git {' '.join(args)} failed:\n{result.output.strip()}")
        return result

    def report_paths(self, rel: str) -> list[str]:
        """The compatibility report's files only (those there, or tracked): a pins table
        (pins.md, a resolve-only run's) or anything else a person keeps in the folder is
        never committed by publish."""
        paths = [f"{rel}/{name}" for name in REPORT_FILES]
        tracked = set(self.run("ls-files", "--", *paths).output.split())
        return [p for p in paths if p in tracked or (self.repo / p).exists()]

    def changed(self, rel: str) -> bool:
        paths = self.report_paths(rel)  # none: nothing of the report to commit
        return bool(paths) and bool(self.run("status", "--porcelain", "--", *paths)
                                    .output.strip())

    def committed_report(self, rel: str) -> Report | None:
        shown = self.run("show", f"HEAD:{rel}/compatibility.json", check=False)
        if not shown.ok:
            return None
        try:
            return parse_report(shown.output, f"{rel}/compatibility.json at git HEAD")
        except CompatError:  # not a report: the commit message counts it as the first one
            return None

    def commit_only(self, rel: str, message: str) -> None:
        paths = self.report_paths(rel)
        self.run("add", "--all", "--", *paths)
        # a pathspec commit takes only these paths, whatever else is staged
        self.run("commit", "--quiet", "-m", message, "--", *paths)

    def push(self, remote: str, branch: str) -> bool:
        return self.run("push", "--quiet", remote, f"HEAD:refs/heads/{branch}",
                        check=False).ok

    def move_to_remote(self, remote: str, branch: str) -> None:
        self.run("fetch", "--quiet", remote, branch)
        self.run("reset", "--quiet", "--keep", "FETCH_HEAD")
