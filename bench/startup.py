"""Benchmark: how long the CLI takes to start and answer, against `python -c pass`.

    python bench/startup.py [--rounds 15]

Runs `unidesk job list` (an empty state dir), `unidesk job status JOB_ID` (one recorded job) and
`unidesk --help` as fresh processes, each `--rounds` times, and prints the median and the fastest
wall time of each, with the bare interpreter's start for comparison, and says whether each meets
the goal: job list, job status and --help <= 0.12 s median on the operator's machine. It runs the
`unidesk` console script of this interpreter's environment as installed (.ci/install: an editable
install, whose import finder every Python start of that environment pays, `python -c pass` too).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_S = 0.12


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], cwd: Path, rounds: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each run (CPU time says more than wall time on a busy machine)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True)  # warm the page cache and .pyc files
    wall, cpu = [], []
    for _ in range(rounds):
        start, cpu0 = time.perf_counter(), cpu_of_children()
        res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True)
        wall.append(time.perf_counter() - start)
        cpu.append(cpu_of_children() - cpu0)
        if res.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(argv)} exited {res.returncode}: {res.stderr.decode()[-400:]}")
    return wall, cpu


def install_mode() -> str:
    """How the measured `unidesk` is installed (an editable install adds an import finder)."""
    import json
    import sysconfig
    from importlib.metadata import distributions

    # The environment's own record (the checkout's unidesk_tui.egg-info is on sys.path too).
    found = list(distributions(name="unidesk-tui", path=[sysconfig.get_paths()["purelib"]]))
    if not found:
        return "not installed"
    direct = found[0].read_text("direct_url.json") or "{}"

    editable = json.loads(direct).get("dir_info", {}).get("editable", False)
    return "editable install (as .ci/install)" if editable else "regular install"


def record_job(state: Path) -> str:
    from unidesk_tui import jobs
    from unidesk_tui.documents import FileSourceDoc, JobRecord

    job_id = jobs.new_job_id()
    jobs.create_job(
        state,
        JobRecord(
            id=job_id,
            status="succeeded",
            environment="file",
            source=FileSourceDoc(path="deploy.json"),
            workspace=str(state.parent),
            createdAt=jobs.now_iso(),
            host=jobs.HOST,
        ),
    )
    return job_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    unidesk = str(Path(sys.executable).with_name("unidesk"))
    with tempfile.TemporaryDirectory(prefix="unidesk-startup-") as tmp:
        ws = Path(tmp)
        empty, one = ws / "empty-state", ws / "state"
        empty.mkdir()
        job_id = record_job(one)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "unidesk job list": [unidesk, "--state-dir", str(empty), "job", "list"],
            "unidesk job status": [unidesk, "--state-dir", str(one), "job", "status", job_id],
            "unidesk --help": [unidesk, "--help"],
        }
        base = None
        print(
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus; {install_mode()}; seconds, "
            f"{args.rounds} rounds"
        )
        if os.getloadavg()[0] > (os.cpu_count() or 1):
            print(
                "busy machine (load above the cpu count): wall medians include waiting for a cpu; `cpu med` is "
                "what each command costs itself"
            )
        print(
            f"{'command':<22} {'median':>8} {'fastest':>8} {'- python':>9} {'cpu med':>8}  goal: median <= "
            f"{GOAL_S:.2f} s"
        )
        for name, argv in cases.items():
            wall, cpu = timed(argv, ws, args.rounds)
            median = statistics.median(wall)
            base = median if base is None else base
            verdict = "" if name.startswith("python") else ("met" if median <= GOAL_S else "over")
            print(
                f"{name:<22} {median:8.3f} {min(wall):8.3f} {median - base:9.3f} {statistics.median(cpu):8.3f}  "
                f"{verdict}"
            )


if __name__ == "__main__":
    main()
