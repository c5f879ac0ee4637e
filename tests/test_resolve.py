"""Commit resolution against real git remotes (bare repositories on disk)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import commit_file, git
from unidesk_tui.errors import ErrorCode, UnideskError, decisive_line
from unidesk_tui.resolve import Resolver, mirror_dir


def _code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.problems[0].code


def test_short_and_full_sha_resolve_to_full(git_world, tmp_path):
    r = Resolver(tmp_path / "state")
    full = git_world.pushed[1]
    assert r.resolve(git_world.service_url, full[:7]) == full
    assert r.resolve(git_world.service_url, full) == full
    assert r.resolve(git_world.service_url, full[:7].upper()) == full


def test_unpushed_commit_is_not_found(git_world, tmp_path):
    with pytest.raises(UnideskError) as exc:
        Resolver(tmp_path / "state").resolve(git_world.service_url, git_world.unpushed, service="backend-core")
    assert _code(exc) == ErrorCode.COMMIT_NOT_FOUND
    assert exc.value.problems[0].service == "backend-core"


def test_force_pushed_away_commit_is_not_found_even_when_mirrored(git_world, tmp_path):
    state = tmp_path / "state"
    clone = git_world.service_clone
    git(clone, "checkout", "-q", "-b", "feature", git_world.pushed[-1])
    doomed = commit_file(clone, "f.txt", "x", "doomed")
    git(clone, "push", "-q", "origin", "feature")
    assert Resolver(state).resolve(git_world.service_url, doomed[:8]) == doomed
    git(clone, "push", "-q", "--force", "origin", f"{git_world.pushed[-1]}:refs/heads/feature")
    with pytest.raises(UnideskError) as exc:
        Resolver(state).resolve(git_world.service_url, doomed[:8])
    assert _code(exc) == ErrorCode.COMMIT_NOT_FOUND


def test_shared_prefix_is_ambiguous_and_lists_candidates(git_world, tmp_path):
    a, b = git_world.twins
    r = Resolver(tmp_path / "state")
    with pytest.raises(UnideskError) as exc:
        r.resolve(git_world.service_url, a[:4])
    assert _code(exc) == ErrorCode.COMMIT_AMBIGUOUS
    assert a in exc.value.problems[0].message and b in exc.value.problems[0].message
    # a longer prefix disambiguates (the twins differ somewhere after the 4th character)
    n = next(i for i in range(4, 40) if a[i] != b[i]) + 1
    assert r.resolve(git_world.service_url, a[:n]) == a


def test_unreachable_remote(tmp_path):
    with pytest.raises(UnideskError) as exc:
        Resolver(tmp_path / "state").resolve(f"file://{tmp_path}/nope.git", "abcd")
    assert _code(exc) == ErrorCode.REPO_UNREACHABLE


def test_one_fetch_per_repository_per_resolver(git_world, tmp_path, monkeypatch):
    r = Resolver(tmp_path / "state")
    calls = []
    real = Resolver._fetch
    monkeypatch.setattr(Resolver, "_fetch", lambda self, url: calls.append(url) or real(self, url))
    for sha in git_world.pushed:
        r.resolve(git_world.service_url, sha[:6])
    assert calls == [git_world.service_url]


def test_new_commits_are_seen_on_the_next_command(git_world, tmp_path):
    state = tmp_path / "state"
    Resolver(state).resolve(git_world.service_url, git_world.pushed[0])
    clone = git_world.service_clone
    git(clone, "checkout", "-q", "-B", "main", git_world.pushed[-1])
    new = commit_file(clone, "n.txt", "n", "new")
    git(clone, "push", "-q", "origin", "HEAD:refs/heads/main")
    assert Resolver(state).resolve(git_world.service_url, new[:7]) == new


def _resolve_in_child(args):
    state, url, sha = args
    return Resolver(Path(state)).resolve(url, sha[:7])


def test_concurrent_commands_share_the_mirror_without_corruption(git_world, tmp_path):
    state = tmp_path / "state"
    jobs = [(str(state), git_world.service_url, sha) for sha in git_world.pushed * 3]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_resolve_in_child, jobs)
    assert results == [sha for _, _, sha in jobs]
    git(mirror_dir(state, git_world.service_url), "fsck", "--no-progress")


@pytest.mark.parametrize("bad", ["$(touch /tmp/pwned)", "abcd;rm", "abcd\n", "-abcd", "--upload-pack=x"])
def test_malicious_commit_ids_never_reach_git(bad, tmp_path, monkeypatch):
    monkeypatch.setattr(Resolver, "_fetch", lambda self, url: pytest.fail("git was called"))
    from unidesk_tui.resolve import RemoteCommits

    with pytest.raises(UnideskError) as exc:
        RemoteCommits("file:///x", []).resolve(bad)
    assert _code(exc) == ErrorCode.INVALID_VALUE


@pytest.mark.parametrize("bad", ["-oProxyCommand=touch /tmp/x", "file:///x;id", "http://a b", "ext::sh -c id", "$(id)"])
def test_malicious_repo_urls_never_reach_git(bad, tmp_path):
    with pytest.raises(UnideskError) as exc:
        Resolver(tmp_path / "state").resolve(bad, "abcd")
    assert _code(exc) == ErrorCode.INVALID_VALUE
    assert not (tmp_path / "state" / "mirrors").exists()


# ---- mirrors that heal (issue 13) -----------------------------------------------------------------


def test_a_lock_file_left_by_a_killed_git_is_removed_and_logged(git_world, tmp_path, caplog):
    state = tmp_path / "state"
    full = git_world.pushed[1]
    Resolver(state).resolve(git_world.service_url, full)
    mirror = mirror_dir(state, git_world.service_url)
    litter = [mirror / "refs" / "heads" / "main.lock", mirror / "packed-refs.lock"]
    for path in litter:
        path.write_text(full + "\n")  # what a git killed mid-fetch leaves behind
    with caplog.at_level("WARNING", logger="unidesk_tui.resolve"):
        assert Resolver(state).resolve(git_world.service_url, full[:8]) == full
    assert not any(p.exists() for p in litter)
    assert any("main.lock" in r.getMessage() and "removed" in r.getMessage() for r in caplog.records)


def test_a_fetch_that_dies_midway_is_retried_once(git_world, tmp_path, monkeypatch):
    """A `git` that is SIGKILLed on its first fetch (as by the OOM killer or a timeout)."""
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True, check=True).stdout.strip()
    bindir, mark = tmp_path / "bin", tmp_path / "killed-once"
    bindir.mkdir()
    (bindir / "git").write_text(
        f'#!/bin/sh\nif [ "$1" = fetch ] && [ ! -e {mark} ]; then : > {mark}; '
        f'echo "fatal: early EOF" >&2; kill -9 $$; fi\nexec {real} "$@"\n'
    )
    (bindir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    full = git_world.pushed[1]
    assert Resolver(tmp_path / "state").resolve(git_world.service_url, full[:8]) == full
    assert mark.exists()


def test_a_corrupt_mirror_is_rebuilt_from_the_remote(git_world, tmp_path, caplog):
    state = tmp_path / "state"
    Resolver(state).resolve(git_world.service_url, git_world.pushed[0])
    mirror = mirror_dir(state, git_world.service_url)
    for obj in (mirror / "objects").rglob("*"):
        if obj.is_file() and obj.parent.name != "info":
            obj.write_bytes(b"garbage")  # every object unreadable
    (mirror / "unidesk-reachable").unlink()
    with caplog.at_level("WARNING", logger="unidesk_tui.resolve"):
        assert Resolver(state).resolve(git_world.service_url, git_world.pushed[1]) == git_world.pushed[1]
    assert any("rebuil" in r.getMessage() for r in caplog.records)
    git(mirror, "fsck", "--no-progress")


def test_repo_unreachable_keeps_gits_decisive_line(tmp_path):
    with pytest.raises(UnideskError) as exc:
        Resolver(tmp_path / "state").resolve(f"file://{tmp_path}/nowhere.git", "abcd")
    assert _code(exc) == ErrorCode.REPO_UNREACHABLE
    message = exc.value.problems[0].message
    assert "does not appear to be a git repository" in message and "stderr" not in message


def test_decisive_line_prefers_the_first_error_over_the_last_advice():
    stderr = (
        "\n  stderr: 'error: cannot lock ref 'refs/heads/main': Unable to create '/m/refs/heads/main.lock': File "
        "exists.\n\n"
        "Another git process seems to be running in this repository.\n"
        "remove the file manually to continue.'"
    )
    assert decisive_line(stderr).startswith("error: cannot lock ref 'refs/heads/main'")
    assert (
        decisive_line("  stderr: 'warning: x\nfatal: unable to access 'h': Could not resolve host: h'")
        == "fatal: unable to access 'h': Could not resolve host: h"
    )
    assert decisive_line("") == "git fetch failed"
