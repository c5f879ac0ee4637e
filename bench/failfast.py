"""How fast a crashing commit fails its rollout, and what the identity check adds to `deploy check`.

Goal (issue 11): a commit whose container exits at start fails its rollout in well under 30 s (the
k3s rollout timeout is 180 s, compose verification's 60 s), naming the exit code. Pushes a commit
whose entrypoint exits 3 to a bench branch, applies it to a compose service (backend-core) and a
k3s one (decision-center), and prints the failing step's duration. Then times `deploy check` of
every service (which reads the provenance records). Needs root on Linux (the lab); the lab lives
in $UNIDESK_BENCH_LAB_DIR (default /tmp/unidesk-lab-bench) and is torn down at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.apply import push_variant  # noqa: E402
from unidesk_lab import lab as labapi  # noqa: E402
from unidesk_lab import sample  # noqa: E402
from unidesk_lab.layout import Layout  # noqa: E402


def cli(lay: Layout, state: Path, *args: str) -> tuple[dict, float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "unidesk_tui.cli", "--workspace", str(lay.workspace), "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
    )
    return json.loads(proc.stdout), time.perf_counter() - started


def crash_commit(lay: Layout, base: str, tmp: Path) -> str:
    def exit_at_start(clone: Path) -> None:
        entry = clone / "app" / "entrypoint.sh"
        entry.write_text(entry.read_text().replace("set -e\n", 'set -e\necho "bench: refusing to start"\nexit 3\n', 1))

    return push_variant(lay, base, tmp, "bench-failfast", exit_at_start, "bench: a container that exits at start")


def main() -> None:
    path = Path(os.environ.get("UNIDESK_BENCH_LAB_DIR") or "/tmp/unidesk-lab-bench")
    labapi.down(path)
    labapi.up(path, seed=True)
    lines = []
    try:
        lay = Layout.load(path.resolve())
        content = sample.content(lay)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            commit = crash_commit(lay, content["new"], tmp)
            for sid in ("backend-core", "decision-center"):
                manifest = tmp / f"{sid}.json"
                manifest.write_text(
                    json.dumps(
                        {
                            "schemaVersion": 1,
                            "services": [{"id": sid, "repo": content["sampleRepo"], "commitId": commit}],
                        }
                    )
                )
                doc, wall = cli(lay, tmp / f"state-{sid}", "deploy", "apply", "--file", str(manifest), "--wait")
                failed = next((s for s in doc["job"]["steps"] if s["status"] == "failed"), None)
                if failed is None:
                    raise SystemExit(f"{sid}: the crashing commit did not fail: {json.dumps(doc)[:2000]}")
                lines.append(
                    f"{sid}: crashing commit failed at step {failed['name']} after {failed['durationMs']} ms "
                    f"(job {wall:.1f} s; goal < 30 s); {failed['code']}: {failed['message'][:160]}"
                )
            manifest = lay.workspace / "deploy.json"
            for i in range(3):
                doc, wall = cli(lay, tmp / "state-check", "deploy", "check", "--file", str(manifest))
                states = {s["id"]: s["live"]["state"] if s.get("live") else None for s in doc["services"]}
                lines.append(f"deploy check of {len(states)} services (identity included) run {i + 1}: {wall:.2f} s")
    finally:
        labapi.down(path)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
