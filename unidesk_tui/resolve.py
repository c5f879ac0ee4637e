"""Commit resolution through the remote: short or full SHA -> the full SHA reachable from the
remote's branches or tags.

Each repository has a bare mirror under `<state>/mirrors/`. A fetch with `--prune` makes the
mirror's refs equal the remote's, so a commit that was never pushed, or was force-pushed away, is
not reachable even if its object lingers. The reachable set is cached per refs state, so a
repeated resolution costs one no-op fetch and a bisect. A file lock per mirror keeps two commands
from fetching into it at once.

Mirrors heal (issue 13): under that flock no git of ours can be running in the mirror, so `*.lock`
files in it were left by a dead git (killed by a timeout, the OOM killer, a reboot) and are removed
and logged; a fetch that dies mid-way is retried once; a mirror that `git fsck` finds corrupt is
rebuilt from the remote. Errors keep git's decisive stderr line, not its closing advice.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from unidesk_tui.errors import ErrorCode, Problem, UnideskError, decisive_line
from unidesk_tui.files import atomic_write, flocked
from unidesk_tui.identifiers import is_commit_id, is_repo_url
from unidesk_tui.redact import redact_url

if TYPE_CHECKING:
    import git

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 120
# Never prompt, never follow the user's credential helpers into a hang.
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "/bin/true",
    "SSH_ASKPASS": "/bin/true",
    "GIT_SSH_COMMAND": "ssh -oBatchMode=yes",
}
_CACHE_NAME = "unidesk-reachable"
# stderr of a fetch cut off mid-way (connection or process lost), worth one more try.
_TRANSIENT = (
    "early EOF",
    "hung up unexpectedly",
    "unexpected disconnect",
    "index-pack failed",
    "RPC failed",
    "Connection reset",
    "timed out",
    "transfer closed",
    "File exists",
)


def remove_stale_locks(repo_dir: Path) -> list[Path]:
    """Delete the `*.lock` files in a repository; call only while holding its flock."""
    removed = []
    for path in repo_dir.rglob("*.lock"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
            log.warning("%s: removed %s left by a git that died", repo_dir, path.relative_to(repo_dir))
    return removed


def _transient(exc: Exception) -> bool:
    status = getattr(exc, "status", None)
    killed = isinstance(status, int) and (status < 0 or status > 128)
    return killed or any(marker in str(getattr(exc, "stderr", "")) for marker in _TRANSIENT)


def mirror_dir(state_dir: Path, url: str) -> Path:
    key = hashlib.sha256(url.encode()).hexdigest()[:20]
    return state_dir / "mirrors" / f"{key}.git"


@dataclass
class RemoteCommits:
    """The commits reachable from one remote's branches and tags, as of one fetch."""

    url: str
    reachable: list[str]  # sorted full SHAs

    def lookup(self, prefix: str) -> list[str]:
        prefix = prefix.lower()
        i = bisect.bisect_left(self.reachable, prefix)
        out = []
        while i < len(self.reachable) and self.reachable[i].startswith(prefix):
            out.append(self.reachable[i])
            i += 1
        return out

    def resolve(self, commit_id: str, service: str | None = None) -> str:
        if not is_commit_id(commit_id):
            raise UnideskError.of(
                ErrorCode.INVALID_VALUE, f"{commit_id!r} is not a 4-40 hex commit id", service=service
            )
        matches = self.lookup(commit_id)
        if not matches:
            raise UnideskError.of(
                ErrorCode.COMMIT_NOT_FOUND,
                f"commit {commit_id} is not reachable from any branch or tag of {redact_url(self.url)} (unpushed, "
                "force-pushed away, or mistyped)",
                service=service,
            )
        if len(matches) > 1:
            raise UnideskError.of(
                ErrorCode.COMMIT_AMBIGUOUS,
                f"commit {commit_id} is ambiguous in {redact_url(self.url)}: {', '.join(matches)}",
                service=service,
            )
        return matches[0]


@dataclass
class Resolver:
    """Resolves commits against remotes; fetches each repository at most once per instance."""

    state_dir: Path
    _remotes: dict[str, RemoteCommits] = field(default_factory=dict)

    def remote(self, url: str) -> RemoteCommits:
        if url not in self._remotes:
            self._remotes[url] = self._fetch(url)
        return self._remotes[url]

    def prefetch(self, urls: Iterable[str]) -> dict[str, UnideskError]:
        """Fetch many repositories concurrently; returns the failures by URL."""
        todo = sorted({u for u in urls if u not in self._remotes})
        failures: dict[str, UnideskError] = {}
        if not todo:
            return failures

        def one(url: str) -> None:
            try:
                self.remote(url)
            except UnideskError as exc:
                failures[url] = exc

        with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
            list(pool.map(one, todo))
        return failures

    def resolve(self, url: str, commit_id: str, service: str | None = None) -> str:
        return self.remote(url).resolve(commit_id, service)

    def _fetch(self, url: str) -> RemoteCommits:
        import git  # lazily: gitpython costs ~80 ms at start-up, and most commands never fetch

        if not is_repo_url(url):
            raise UnideskError.of(ErrorCode.INVALID_VALUE, f"{url!r} is not a valid repository URL")
        path = mirror_dir(self.state_dir, url)
        with flocked(path.with_suffix(".lock")):
            for attempt in (1, 2):
                if path.exists():
                    remove_stale_locks(path)
                try:
                    return RemoteCommits(url, self._sync(git, path, url))
                except git.GitCommandError as exc:
                    if attempt == 1 and _transient(exc):
                        log.warning(
                            "%s: fetch of %s died (%s); retrying once", path, redact_url(url), decisive_line(exc.stderr)
                        )
                        continue
                    if attempt == 1 and path.exists() and not _fsck_clean(git, path):
                        log.warning(
                            "%s: git fsck failed; rebuilding the mirror of %s from the remote", path, redact_url(url)
                        )
                        shutil.rmtree(path)
                        continue
                    detail = redact_url(decisive_line(exc.stderr))
                    message = f"cannot fetch {redact_url(url)}: {detail}"
                    raise UnideskError.of(ErrorCode.REPO_UNREACHABLE, message) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _sync(self, git, path: Path, url: str) -> list[str]:
        if not (path / "HEAD").exists():
            path.mkdir(parents=True, exist_ok=True)
            git.Repo.init(path, bare=True)
        repo = git.Repo(path)
        repo.git.fetch(
            "--prune",
            "--force",
            "--no-tags",
            "--quiet",
            "--",
            url,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
            env={**os.environ, **GIT_ENV},
            kill_after_timeout=FETCH_TIMEOUT_S,
        )
        return self._reachable(repo, path)

    @staticmethod
    def _reachable(repo: git.Repo, path: Path) -> list[str]:
        refs = repo.git.for_each_ref("--format=%(objectname) %(refname)")
        state = hashlib.sha256(refs.encode()).hexdigest()
        cache = path / _CACHE_NAME
        try:
            head, _, body = cache.read_text().partition("\n")
            if head == state:
                return body.split()
        except FileNotFoundError:
            pass
        shas = sorted(repo.git.rev_list("--all").split()) if refs.strip() else []
        atomic_write(cache, (state + "\n" + "\n".join(shas)).encode())
        return shas


def _fsck_clean(git, path: Path) -> bool:
    try:
        git.Repo(path).git.fsck("--no-progress", "--connectivity-only", kill_after_timeout=FETCH_TIMEOUT_S)
    except (git.GitCommandError, git.InvalidGitRepositoryError, git.NoSuchPathError):
        return False
    return True


def resolve_many(resolver: Resolver, wanted: list[tuple[str, str, str]]) -> tuple[dict[str, str], list[Problem]]:
    """Resolve (service, url, commitId) triples; returns full SHAs by service and every problem."""
    failures = resolver.prefetch(url for _, url, _ in wanted)
    resolved: dict[str, str] = {}
    problems: list[Problem] = []
    for service, url, commit_id in wanted:
        if url in failures:
            problems.extend(Problem(p.code, p.message, service=service, path=p.path) for p in failures[url].problems)
            continue
        try:
            resolved[service] = resolver.resolve(url, commit_id, service)
        except UnideskError as exc:
            problems.extend(exc.problems)
    return resolved, problems
