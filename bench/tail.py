"""`unidesk job status ID --tail-bytes 30000` on a 1 MB vs a 1 GB event log; print both and the ratio.

Goal: 1 GB <= 1.2x the 1 MB time. The logs are real bytes (no sparse holes): a 1 MiB block of
event lines written repeatedly, then removed. Each figure is the median of several fresh CLI
processes; the in-process `jobs.tail` (best of 7 x 100 calls) is printed too, since process start-up
dominates the CLI figure.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from unidesk_tui import jobs  # noqa: E402
from unidesk_tui.documents import FileSourceDoc, JobRecord  # noqa: E402

MB = 1024 * 1024
RUNS = 7
TAIL = 30000


def block(first_seq: int) -> tuple[bytes, int]:
    """About 1 MiB of whole event lines, and the next sequence number."""
    lines, seq, size = [], first_seq, 0
    while size < MB:
        line = (
            json.dumps(
                {
                    "ts": "2026-11-27T08:00:00.000Z",
                    "seq": seq,
                    "step": "build",
                    "service": "backend-core",
                    "stream": "stdout",
                    "text": f"#{seq} [builder 3/7] RUN make -j4 target-{seq % 97} " + "." * 60,
                }
            )
            + "\n"
        )
        lines.append(line)
        size += len(line)
        seq += 1
    return "".join(lines).encode(), seq


def make_job(state: Path, size_mb: int) -> str:
    job_id = jobs.new_job_id()
    jobs.create_job(
        state,
        JobRecord(
            id=job_id,
            status="succeeded",
            environment="file",
            source=FileSourceDoc(path="/w/deploy.json"),
            workspace="/w",
            services=["backend-core"],
            createdAt=jobs.now_iso(),
            host=jobs.HOST,
        ),
    )
    data, _ = block(1)
    fd = os.open(jobs.job_dir(state, job_id) / jobs.EVENTS_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(size_mb):
            os.write(fd, data)
    finally:
        os.close(fd)
    return job_id


def cli_time(state: Path, job_id: str) -> float:
    start = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "unidesk_tui.cli",
            "--state-dir",
            str(state),
            "job",
            "status",
            job_id,
            "--tail-bytes",
            str(TAIL),
        ],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    took = time.perf_counter() - start
    doc = json.loads(out)
    assert doc["ok"] and doc["log"]["events"], doc.get("errors")
    return took


def inproc_time(state: Path, job_id: str) -> float:
    start = time.perf_counter()
    for _ in range(100):
        jobs.tail(state, job_id, TAIL)
    return (time.perf_counter() - start) / 100


def main() -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        state = Path(tmp)
        made = time.perf_counter()
        small, big = make_job(state, 1), make_job(state, 1024)
        made = time.perf_counter() - made
        size = (jobs.job_dir(state, big) / jobs.EVENTS_FILE).stat().st_size
        cli_time(state, small), cli_time(state, big)  # warm imports
        c_small = statistics.median(cli_time(state, small) for _ in range(RUNS))
        c_big = statistics.median(cli_time(state, big) for _ in range(RUNS))
        i_small = min(inproc_time(state, small) for _ in range(RUNS))
        i_big = min(inproc_time(state, big) for _ in range(RUNS))
    print(f"logs: 1 MiB and {size / MB:.0f} MiB written in {made:.1f}s (removed)")
    print(
        f"job status --tail-bytes {TAIL} (CLI, median of {RUNS}): 1 MB {c_small * 1000:.1f} ms, 1 GB "
        f"{c_big * 1000:.1f} ms, ratio {c_big / c_small:.3f} (goal <= 1.2)"
    )
    print(
        f"jobs.tail in-process (best of {RUNS} x 100): 1 MB {i_small * 1e6:.0f} us, 1 GB {i_big * 1e6:.0f} us, ratio "
        f"{i_big / i_small:.3f}"
    )


if __name__ == "__main__":
    main()
