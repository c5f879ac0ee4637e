"""How fast `deploy apply` refuses a service another live job holds (`locked`), as a fresh CLI.

Goal (issue 13): under 2 s, even under load: the held lock is refused before any fetch or live
read. The holder is a live process with a running job record, as a worker is. Prints the time of
each of N refusals (default 5) and their maximum.
Usage: python bench/locked_refusal.py [N]
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
from bench.plan_scale import make_remote, make_workspace  # noqa: E402
from unidesk_tui import jobs, locks  # noqa: E402
from unidesk_tui.documents import FileSourceDoc, JobRecord  # noqa: E402


def main(n: int) -> int:
    with tempfile.TemporaryDirectory(prefix="unidesk-locked-") as tmp:
        root = Path(tmp)
        url, sha = make_remote(root)
        ws = make_workspace(root, 50, url, sha)
        holder = subprocess.Popen(["sleep", "600"])
        try:
            job_id = jobs.new_job_id()
            start = jobs.process_start(holder.pid)
            jobs.create_job(
                ws.state_dir,
                JobRecord(
                    id=job_id,
                    status="running",
                    environment="file",
                    source=FileSourceDoc(path="deploy.json"),
                    workspace=str(ws.root),
                    services=["svc-0"],
                    createdAt=jobs.now_iso(),
                    host=jobs.HOST,
                    workerPid=holder.pid,
                    workerStart=start,
                ),
            )
            locks.acquire(ws.state_dir, "file", ["svc-0"], job_id, pid=holder.pid)
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "unidesk_tui.cli",
                        "--workspace",
                        str(ws.root),
                        "--state-dir",
                        str(ws.state_dir),
                        "deploy",
                        "apply",
                    ],
                    capture_output=True,
                    text=True,
                    cwd=Path(__file__).resolve().parent.parent,
                )
                times.append(time.perf_counter() - t0)
                codes = [e["code"] for e in json.loads(out.stdout)["errors"]]
                assert codes == ["locked"], out.stdout
                print(f"locked refusal: {times[-1]:.2f} s", flush=True)
            load = os.getloadavg()[0]
            print(
                f"max {max(times):.2f} s over {n} refusals (load average {load:.1f}); goal < 2 s: "
                f"{'met' if max(times) < 2 else 'NOT met'}"
            )
        finally:
            holder.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
