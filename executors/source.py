"""Target-side source: fetch into a per-repository mirror on the target, export one commit.

Runs on the target over SSH, through the step's proxy scope; the operator's tree is never used.
The mirror lives under `<workDir>/mirrors/`, build contexts under `<workDir>/contexts/` and are
removed after the build.

Mirrors heal as the controller's do (unidesk_tui/resolve.py): under the mirror's flock, `*.lock`
files a dead git left are removed and reported, a failed fetch is retried once, and a mirror that
`git fsck` finds corrupt is rebuilt from the remote. Contexts are named after the job's
(environment, service); the job holds that target lock (unidesk_tui/target_locks.py) while it
runs, so any other context of the pair on this target belongs to a job that is no longer running
and is removed at the next apply, whatever its age.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import secrets

from executors.proxy import ProxyScope, check_repo_for_scope
from executors.steps import run_checked
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.identifiers import is_full_sha, is_repo_url, is_safe_path
from unidesk_tui.redact import redact_url

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 600.0
LOCK_WAIT = "600"
# Contexts named before they carried the environment are still pruned by age: older than this
# they cannot belong to a running build (builds time out after 30 min).
STALE_CONTEXT_MINUTES = 120
# `sh -c HEAL sh MIRROR FETCH-ARGV...`, run under the mirror's flock (no git of ours can be at work
# in it): remove what a dead git left, fetch, retry once, rebuild a mirror git fsck finds corrupt.
HEAL = (
    "m=$1; shift\n"
    'find "$m" -name "*.lock" -type f -print -delete 2>/dev/null | sed "s|^|target_source_stale_lock_removed=|"\n'
    '"$@" && exit 0\n'
    'echo "target_source_fetch_retry=the fetch failed; retrying once" >&2\n'
    '"$@" && exit 0\n'
    'if git --git-dir "$m" fsck --connectivity-only --no-progress >/dev/null 2>&1; then exit 1; fi\n'
    'echo "target_source_mirror_rebuilt=git fsck failed; fetching the mirror anew" >&2\n'
    'rm -rf -- "$m" && git init --bare --quiet "$m" && exec "$@"\n'
)


def mirror_path(work_dir: str, repo: str) -> str:
    """One bare mirror per repository URL: a readable stem plus a hash of the full URL."""
    stem = (
        re.sub(r"[^A-Za-z0-9._-]", "-", repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))[:40].strip("-.")
        or "repo"
    )
    key = hashlib.sha256(repo.encode()).hexdigest()[:12]
    return posixpath.join(work_dir, "mirrors", f"{stem}-{key}.git")


HEX = "[0-9a-f]"  # one hex digit, in a find -name pattern


def context_path(work_dir: str, environment: str, service_id: str, commit: str) -> str:
    """A fresh directory per build."""
    return posixpath.join(work_dir, "contexts", f"{environment}--{service_id}-{commit[:12]}-{secrets.token_hex(4)}")


def is_context_path(work_dir: str, path: str) -> bool:
    """Only what `context_path` made may be removed."""
    parent = posixpath.join(work_dir, "contexts") + "/"
    leaf = path[len(parent) :]
    return (
        path.startswith(parent)
        and bool(leaf)
        and "/" not in leaf
        and leaf not in (".", "..")
        and ".." not in path
        and is_safe_path(path)
    )


def locked(mirror: str, argv: list[str]) -> list[str]:
    """Serialize work on one mirror between concurrent jobs on the target."""
    return ["flock", "-w", LOCK_WAIT, f"{mirror}.lock", *argv]


def fetch_argv(mirror: str, repo: str, refspec: str, *, prune: bool = False) -> list[str]:
    """`git fetch` of one refspec into the mirror, never prompting for credentials."""
    argv = ["git", "--git-dir", mirror, "-c", "credential.interactive=never", "fetch", "--quiet"]
    return argv + (["--prune"] if prune else []) + ["--no-tags", "--", repo, refspec]


def healing(mirror: str, fetch: list[str]) -> list[str]:
    """`fetch` under the mirror's flock, healing the mirror first and after a failure (HEAL)."""
    return locked(mirror, ["sh", "-c", HEAL, "sh", mirror, *fetch])


async def remove_context(session, work_dir: str, path: str) -> bool:
    if not is_context_path(work_dir, path):
        log.warning("refusing to remove %s", path)
        return False
    res = await session.run(["rm", "-rf", "--", path, f"{path}.tar"], timeout=120)
    return res.ok


async def prune_dead_contexts(session, ctx, work_dir: str, environment: str, service_id: str) -> None:
    """Remove the contexts of (environment, service) left by jobs that are no longer running.

    Called while the job holds the target lock for the pair, so no other job of it runs here:
    every such context is dead, whatever its age. Another environment's contexts are untouched.
    """
    contexts = posixpath.join(work_dir, "contexts")
    # context_path's exact shape: `backend-core` must not match `backend-core-x`'s contexts
    mine = f"{environment}--{service_id}-{HEX * 12}-{HEX * 8}"
    res = await session.run(
        [
            "find",
            contexts,
            "-mindepth",
            "1",
            "-maxdepth",
            "1",
            "(",
            "-name",
            mine,
            "-o",
            "-name",
            f"{mine}.tar",  # git archive's, when its job died before unpacking it
            "-o",
            "-name",
            f"{service_id}-*",
            "-mmin",
            f"+{STALE_CONTEXT_MINUTES}",
            ")",
            "-print",
            "-exec",
            "rm",
            "-rf",
            "--",
            "{}",
            "+",
        ],
        timeout=120,
    )
    for line in res.stdout.splitlines():
        ctx.emit(f"target_build_context_pruned={line}")


async def source_step(ctx) -> None:
    """Fetch the requested commit on the target and export it with `git archive`."""
    repo, commit, sid = ctx.service.repo, ctx.service.commit, ctx.service.id
    if not is_repo_url(repo) or not is_full_sha(commit or ""):
        raise UnideskError.of(
            ErrorCode.INVALID_VALUE, f"{sid}: refusing repository {redact_url(repo)!r} / commit {commit!r}", service=sid
        )
    scope: ProxyScope | None = ctx.shared.get("proxy")
    if scope is None:
        ms = ctx.service.microservice
        if ctx.target.role == "provider" or (ms and ms.build and ms.build.requiresProxy):
            # Never silently direct: the proxy-probe step sets the scope, and it did not run.
            raise UnideskError.of(
                ErrorCode.PROXY_PROBE_FAILED,
                f"{ctx.target.id}: no egress proxy scope for {sid} (the proxy probe did not run); refusing to fetch "
                "directly",
                service=sid,
            )
        scope = ProxyScope(None)
    check_repo_for_scope(repo, scope, ctx.target.id, sid)
    work_dir = ctx.target.workDir
    session = await ctx.session()
    mirror = mirror_path(work_dir, repo)
    git_env = {**scope.env(), "GIT_TERMINAL_PROMPT": "0"}
    ctx.shared["mirror"] = mirror
    ctx.emit(f"target_source_mirror={mirror}")
    ctx.emit(f"target_source_proxy={scope.describe()}")
    await run_checked(
        session,
        ctx,
        ["mkdir", "-p", "--", posixpath.dirname(mirror), posixpath.join(work_dir, "contexts")],
        ErrorCode.BUILD_FAILED,
        "creating the work directories",
    )
    environment = ctx.service.environment or "file"
    await prune_dead_contexts(session, ctx, work_dir, environment, sid)
    probe = await session.run(["git", "--git-dir", mirror, "rev-parse", "--git-dir"], timeout=30)
    if not probe.ok:
        await run_checked(
            session,
            ctx,
            locked(mirror, ["git", "init", "--bare", "--quiet", mirror]),
            ErrorCode.BUILD_FAILED,
            "creating the mirror",
        )
    # Branches first (they make reachability visible), then the SHA itself if still absent.
    await run_checked(
        session,
        ctx,
        healing(mirror, fetch_argv(mirror, repo, "+refs/heads/*:refs/heads/*", prune=True)),
        ErrorCode.REPO_UNREACHABLE,
        f"fetching {redact_url(repo)}",
        env=git_env,
        timeout=FETCH_TIMEOUT,
    )
    have = await session.run(["git", "--git-dir", mirror, "cat-file", "-e", f"{commit}^{{commit}}"], timeout=30)
    if not have.ok:
        await run_checked(
            session,
            ctx,
            healing(mirror, fetch_argv(mirror, repo, commit)),
            ErrorCode.COMMIT_NOT_FOUND,
            f"fetching commit {commit}",
            env=git_env,
            timeout=FETCH_TIMEOUT,
        )
    resolved = await run_checked(
        session,
        ctx,
        ["git", "--git-dir", mirror, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
        ErrorCode.COMMIT_NOT_FOUND,
        f"resolving {commit}",
    )
    full = resolved.stdout.strip()
    if full != commit:
        raise UnideskError.of(
            ErrorCode.COMMIT_NOT_FOUND, f"{ctx.target.id}: {commit} resolved to {full!r} on the target", service=sid
        )
    ctx.emit(f"target_source_commit={full}")
    context = context_path(work_dir, environment, sid, full)
    ctx.shared["context"] = context
    try:
        await run_checked(session, ctx, ["mkdir", "--", context], ErrorCode.BUILD_FAILED, "creating the build context")
        await run_checked(
            session,
            ctx,
            ["git", "--git-dir", mirror, "archive", "--format=tar", "-o", f"{context}.tar", full],
            ErrorCode.BUILD_FAILED,
            "git archive",
        )
        await run_checked(
            session,
            ctx,
            ["tar", "-xf", f"{context}.tar", "-C", context],
            ErrorCode.BUILD_FAILED,
            "unpacking the archive",
        )
        await run_checked(
            session, ctx, ["rm", "-f", "--", f"{context}.tar"], ErrorCode.BUILD_FAILED, "removing the archive"
        )
    except UnideskError:
        await remove_context(session, work_dir, context)
        ctx.shared.pop("context", None)
        raise
    ctx.emit(f"target_build_context={context} (git archive {full[:12]})")
