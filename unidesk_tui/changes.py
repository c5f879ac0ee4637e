"""What a deploy would change for one service: the commits between the running and the desired
commit, and the files they touch, read from the local mirror (no network; `check` keeps it fresh).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from unidesk_tui.identifiers import is_commit_id
from unidesk_tui.resolve import GIT_ENV, mirror_dir

MAX_COMMITS = 200
GIT_TIMEOUT_S = 20


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str
    date: str  # YYYY-MM-DD


@dataclass(frozen=True)
class FileChange:
    path: str
    added: int | None  # None for a binary file
    removed: int | None


@dataclass
class CommitRange:
    """`forward`: commits the deploy brings (running..desired); `backward`: commits it takes away."""

    running: str | None
    desired: str | None
    forward: list[Commit] = field(default_factory=list)
    backward: list[Commit] = field(default_factory=list)
    files: list[FileChange] = field(default_factory=list)
    note: str | None = None  # why the range could not be read, or what it means


def _git(mirror: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", f"--git-dir={mirror}", *args],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
        env={**GIT_ENV, "PATH": "/usr/bin:/bin:/usr/local/bin", "GIT_CONFIG_NOSYSTEM": "1"},
        check=True,
    )
    return out.stdout


def _commits(mirror: Path, spec: str) -> list[Commit]:
    text = _git(
        mirror, "log", f"--max-count={MAX_COMMITS}", "--format=%H%x1f%s%x1f%an%x1f%ad", "--date=short", spec, "--"
    )
    out = []
    for line in text.splitlines():
        sha, subject, author, date = (line.split("\x1f") + ["", "", ""])[:4]
        out.append(Commit(sha, subject, author, date))
    return out


def _has(mirror: Path, sha: str) -> bool:
    try:
        _git(mirror, "cat-file", "-e", f"{sha}^{{commit}}")
        return True
    except subprocess.CalledProcessError:
        return False


def commit_range(state_dir: Path, repo_url: str | None, running: str | None, desired: str | None) -> CommitRange:
    """The commits and files between `running` and `desired` (full SHAs) in the repository's mirror."""
    out = CommitRange(running, desired)
    if not repo_url or not desired or not is_commit_id(desired):
        out.note = "no resolved desired commit"
        return out
    mirror = mirror_dir(state_dir, repo_url)
    if not mirror.is_dir():
        out.note = "no local mirror of the repository yet (a refresh fetches it)"
        return out
    try:
        if running is None or not is_commit_id(running):
            out.note = "nothing proves a running commit: the desired commit is deployed whole"
            out.forward = _commits(mirror, desired)[:1]
            return out
        if running == desired:
            out.note = "the running commit is the desired one: nothing changes"
            return out
        if not _has(mirror, running):
            out.note = f"the running commit {running[:12]} is not in the mirror (never pushed, or force-pushed away)"
            out.forward = _commits(mirror, desired)[:1]
            return out
        out.forward = _commits(mirror, f"{running}..{desired}")
        out.backward = _commits(mirror, f"{desired}..{running}")
        for line in _git(mirror, "diff", "--numstat", running, desired, "--").splitlines():
            added, removed, path = (line.split("\t", 2) + ["", ""])[:3]
            out.files.append(
                FileChange(path, int(added) if added.isdigit() else None, int(removed) if removed.isdigit() else None)
            )
        if out.backward and not out.forward:
            out.note = "the desired commit is older than the running one: the deploy rolls back"
        elif out.backward:
            out.note = "running and desired have diverged: the deploy drops commits as well as adding them"
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        out.note = f"git could not read the range: {getattr(exc, 'stderr', '') or exc}".strip()
    return out
