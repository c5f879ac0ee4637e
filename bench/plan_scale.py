"""Plan time against the number of services: 1k, 10k and 100k (issue 13).

Goal: 10k services plan in <= 2 s, and growth stays within 1.3x of linear (time per service at
100k <= 1.3x time per service at 1k... measured between successive sizes). Each service is
source-built from one local bare repository (file://), so the figures are the planner's own cost
(manifest and config parsing, join, one fetch, resolution, decisions), without live reads.
Usage: python bench/plan_scale.py [SIZES...]   (default 1000 10000 100000)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from unidesk_tui.planning import run_plan  # noqa: E402
from unidesk_tui.workspace import Workspace  # noqa: E402

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@b",
}


def make_remote(root: Path) -> tuple[str, str]:
    work = root / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "Dockerfile").write_text("FROM scratch\n")
    subprocess.run(["git", "add", "."], cwd=work, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "x"], cwd=work, check=True, env=ENV)
    bare = root / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
    ).stdout.strip()
    return f"file://{bare}", sha


def make_workspace(root: Path, n: int, url: str, sha: str) -> Workspace:
    ws = root / f"ws{n}"
    ws.mkdir()
    ssh = {"host": "127.0.0.1", "port": 9, "user": "root"}
    ids = [f"svc-{i}" for i in range(n)]
    config = {
        "targets": [{"id": "main-server", "role": "main", "ssh": ssh}],
        "microservices": [
            {
                "id": sid,
                "repository": {"url": url},
                "deployment": {"mode": "unidesk-direct", "target": "main-server"},
                "build": {"dockerfile": "Dockerfile", "context": ".", "image": f"{sid}:main"},
                "compose": {"project": "unidesk", "service": sid},
            }
            for sid in ids
        ],
    }
    (ws / "config.json").write_text(json.dumps(config))
    manifest = {"schemaVersion": 1, "services": [{"id": sid, "repo": url, "commitId": sha[:10]} for sid in ids]}
    (ws / "deploy.json").write_text(json.dumps(manifest))
    return Workspace.at(ws, root / f"state{n}")


def main(sizes: list[int]) -> int:
    with tempfile.TemporaryDirectory(prefix="unidesk-plan-scale-") as tmp:
        root = Path(tmp)
        url, sha = make_remote(root)
        run_plan(make_workspace(root, 1, url, sha), "plan")  # warm imports
        rows = []
        for n in sizes:
            ws = make_workspace(root, n, url, sha)
            t0 = time.perf_counter()
            doc = run_plan(ws, "plan").document
            took = time.perf_counter() - t0
            assert len(doc.services) == n and not doc.errors, doc.errors[:3]
            rows.append((n, took))
            print(f"plan {n:>7} services: {took:7.2f} s  ({took / n * 1e6:6.1f} us/service)", flush=True)
        for (n1, t1), (n2, t2) in zip(rows, rows[1:], strict=False):
            print(f"growth {n1} -> {n2}: {(t2 / t1) / (n2 / n1):.2f}x linear")
        ten_k = dict(rows).get(10_000)
        if ten_k is not None:
            print(f"goal 10k <= 2 s: {'met' if ten_k <= 2 else 'NOT met'} ({ten_k:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]] or [1000, 10_000, 100_000]))
