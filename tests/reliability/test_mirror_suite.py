"""Mirror suite: concurrent fetches into one mirror, and fetches killed (with their git) at random
points; afterwards `git fsck` is clean and the next command resolves (issue 13)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import git, wait_for
from unidesk_tui.resolve import Resolver, mirror_dir

CONCURRENT = 8
KILLS = 10
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "GIT_AUTHOR_NAME": "m", "GIT_AUTHOR_EMAIL": "m@m", "GIT_COMMITTER_NAME": "m", "GIT_COMMITTER_EMAIL": "m@m"}
RESOLVE = "import sys; from pathlib import Path; from unidesk_tui.resolve import Resolver; print(Resolver(Path(sys.argv[1])).resolve(sys.argv[2], sys.argv[3]))"


def push_commits(work: Path, n: int, tag: str) -> str:
    """n new commits of a few KB each on main, pushed to the bare remote; returns the newest."""
    lines = [b"reset refs/heads/main\nfrom refs/heads/main^0\n"] if (work / ".git" / "refs" / "heads" / "main").exists() else []
    rng = random.Random(tag)
    for i in range(n):
        data = rng.randbytes(16 * 1024)  # incompressible: the fetch takes a while to index
        lines.append(b"commit refs/heads/main\n")
        lines.append(f"committer m <m@m> {1_700_000_000 + i} +0000\ndata 2\nc\n".encode())
        lines.append(f"M 644 inline f{i % 50}.txt\ndata {len(data)}\n".encode() + data + b"\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=work, input=b"".join(lines), check=True, env=ENV)
    # Many branches too: a fetch then spends a while updating refs, each under its `.lock` file.
    shas = git(work, "rev-list", "-n", str(n), "main").split()
    refs = "".join(f"create refs/heads/{tag}-{j} {sha}\n" for j, sha in enumerate(shas))
    subprocess.run(["git", "update-ref", "--stdin"], cwd=work, input=refs.encode(), check=True)
    git(work, "push", "-q", "origin", "refs/heads/*:refs/heads/*")
    return git(work, "rev-parse", "main").strip()


def git_fetch_started(pid: int) -> bool:
    """Whether a `git fetch` runs in the process group of `pid` (the command under test)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pid and b"fetch" in (entry / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def resolver_process(state: Path, url: str, sha: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RESOLVE, str(state), url, sha], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def test_mirror_survives_concurrent_and_killed_fetches(tmp_path, figures):
    bare, work = tmp_path / "remote.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", str(bare))
    url = f"file://{bare}"
    state = tmp_path / "state"
    newest = push_commits(work, 150, "a")
    rng = random.Random(int(os.environ.get("UNIDESK_MIRROR_SEED", "13")))

    procs = [resolver_process(state, url, newest[:10]) for _ in range(CONCURRENT)]
    outs = [p.communicate(timeout=120) for p in procs]
    concurrent_ok = sum(p.returncode == 0 and out.decode().strip() == newest for p, (out, _) in zip(procs, outs))

    recovered = left_locks = 0
    for i in range(KILLS):
        newest = push_commits(work, 80, f"k{i}")
        proc = resolver_process(state, url, newest[:10])
        wait_for(lambda: git_fetch_started(proc.pid) or proc.poll() is not None, "the fetch to start", interval=0.01)
        time.sleep(rng.uniform(0, 0.3))
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and its git, as a timeout or the OOM killer does
        except ProcessLookupError:
            pass
        proc.wait()
        left_locks += any(mirror_dir(state, url).rglob("*.lock"))  # a git died mid-fetch
        recovered += Resolver(state).resolve(url, newest[:10]) == newest  # the next command
    fsck = subprocess.run(["git", "fsck", "--no-progress"], cwd=mirror_dir(state, url), capture_output=True, text=True)
    litter = [p for p in mirror_dir(state, url).rglob("*.lock")]
    figures("mirror", "self-healing mirrors", {
        "concurrent_fetches": CONCURRENT, "concurrent_ok": concurrent_ok, "killed_fetches": KILLS,
        "kills_leaving_lock_files": left_locks, "next_command_ok": recovered, "fsck_clean": fsck.returncode == 0, "lock_files_left": len(litter),
    })
    assert concurrent_ok == CONCURRENT and recovered == KILLS and fsck.returncode == 0, fsck.stderr
    assert litter == []
