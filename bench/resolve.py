"""Resolve 50 short SHAs against a remote twice (fresh command each time); print both times.

Goal: the second run (mirror cache warm) takes <= 0.1x the first. Uses a local bare remote
with 10,000 commits (a few KB changed in each), served over the file:// transport.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from unidesk_tui.resolve import Resolver  # noqa: E402

COMMITS = 10_000
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@b",
}


def make_remote(root: Path, commits: int) -> tuple[str, list[str]]:
    bare = root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    work = root / "work"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    # fast-import writes many commits in one process; successive commits on a branch chain
    lines = []
    for i in range(commits):
        data = (f"v{i}\n" * 200).encode()  # a few KB of changing content per commit
        lines.append(b"commit refs/heads/main\n")
        lines.append(f"committer b <b@b> {1_600_000_000 + i} +0000\n".encode())
        lines.append(b"data 2\nc\n")
        lines.append(f"M 644 inline f.txt\ndata {len(data)}\n".encode() + data + b"\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=work, input=b"".join(lines), check=True, env=ENV)
    subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=work, check=True)
    shas = subprocess.run(
        ["git", "rev-list", "main"], cwd=work, capture_output=True, text=True, check=True
    ).stdout.split()
    return f"file://{bare}", shas


def run_once(state: Path, url: str, shas: list[str]) -> float:
    start = time.perf_counter()
    r = Resolver(state)
    for sha in shas:
        assert r.resolve(url, sha[:8]) == sha
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url, shas = make_remote(root, COMMITS)
        sample = shas[:: COMMITS // 50][:50]
        first = run_once(root / "state", url, sample)
        second = run_once(root / "state", url, sample)
        print(
            f"resolve 50 short SHAs ({COMMITS}-commit remote): first {first:.3f}s, second {second:.3f}s, ratio "
            f"{second / first:.3f} (goal <= 0.1)"
        )


if __name__ == "__main__":
    main()
