"""R1: never two overlapping jobs of one service, whatever happens to the CLIs launching them.

The real CLI, plan, locks, launch handshake and detached workers run; only the work the steps do is
the test workload's (its build holds for a while and records when, see tests/apply_workload.py).
Overlaps are measured on the workload's own clock: two builds of one service in flight at once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests import apply_workload
from tests.conftest import wait_for
from unidesk_tui import jobs, locks
from unidesk_tui.apply import apply
from unidesk_tui.errors import ErrorCode
from unidesk_tui.model import JOB_TERMINAL

CONCURRENT = 20
KILLS = 30
SERVICE = "backend-core"
REPO = Path(__file__).resolve().parents[2]


def cli(ws) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "unidesk_tui.cli", "--workspace", str(ws.root), "--state-dir", str(ws.state_dir),
         "deploy", "apply", "--env", "dev", "--service", SERVICE],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO,
    )


def document(proc: subprocess.Popen) -> dict | None:
    out = proc.communicate(timeout=120)[0].decode()
    return json.loads(out) if out.strip() else None


def all_ended(ws) -> bool:
    return all(r.status in JOB_TERMINAL for r in jobs.list_jobs(ws.state_dir))


def job_ids(ws) -> set[str]:
    root = jobs.jobs_root(ws.state_dir)
    return set(os.listdir(root)) if root.exists() else set()


def setup_dev(world, rt: Path, hold: float) -> None:
    world.push_env("dev", world.manifest([{"id": SERVICE, "repo": world.service_url, "commitId": world.pushed[1]}], environment="dev"))
    (rt / "behaviour.json").write_text(json.dumps({"build": "hold", "holdSeconds": hold}))


def test_r1_concurrent_applies_and_killed_launches_never_overlap(ws, git_world, workload, figures):
    setup_dev(git_world, workload, hold=0.4)
    rng = random.Random(int(os.environ.get("UNIDESK_R1_SEED", "13")))

    # 20 concurrent applies of one service (force: each would redeploy the same commit).
    procs = [cli(ws) for _ in range(CONCURRENT)]
    with ThreadPoolExecutor(CONCURRENT) as pool:
        docs = list(pool.map(document, procs))
    wait_for(lambda: all_ended(ws), "every job to end", timeout=120)
    started = [d for d in docs if d and d["ok"]]
    refused = [d for d in docs if d and not d["ok"]]
    assert all([e["code"] for e in d["errors"]] == [ErrorCode.LOCKED] for d in refused), refused
    assert len(started) + len(refused) == CONCURRENT and len(started) >= 1
    assert len(job_ids(ws)) == len(started)  # a refused apply leaves no job

    # 30 CLIs killed or interrupted at random points of their launch, each raced by another apply.
    # The points are drawn over an undisturbed CLI's whole life: before, during and after its launch.
    t0 = time.monotonic()
    solo = document(cli(ws))
    took = time.monotonic() - t0
    assert solo["ok"], solo
    wait_for(lambda: all_ended(ws), "every job to end", timeout=60)
    unnamed = named = 0
    by_signal = {signal.SIGKILL: 0, signal.SIGINT: 0, signal.SIGHUP: 0}
    for i in range(KILLS):
        sig = list(by_signal)[i % 3]
        by_signal[sig] += 1
        before = job_ids(ws)
        a = cli(ws)
        time.sleep(rng.uniform(0.1 * took, 1.1 * took))
        a.send_signal(sig)
        b = apply(ws, env="dev", services=[SERVICE], read_live=apply_workload.read_live)
        doc_a = document(a)
        wait_for(lambda: all_ended(ws), "every job to end", timeout=60)
        new = job_ids(ws) - before
        printed = {d.get("jobId") for d in (doc_a, b.model_dump()) if d and d.get("jobId")}
        assert printed <= new
        if sig == signal.SIGKILL:
            assert len(new - printed) <= 1  # the killed CLI's job, running under its own worker
            unnamed += len(new - printed)
        else:  # an interrupted CLI printed its job's id, or left no job
            assert new == printed, (sig, doc_a, b)
            if doc_a and not doc_a.get("jobId"):
                assert doc_a["errors"][0]["code"] in (ErrorCode.INTERRUPTED, ErrorCode.LOCKED), doc_a
            if doc_a and doc_a.get("jobId"):
                named += 1
        wait_for(lambda: locks.read_lock(ws.state_dir, "dev", SERVICE) is None, "the lock released by its job")

    overlapping = apply_workload.overlaps(workload, alive_until=time.time())
    total = len(job_ids(ws))
    figures("R1", "one deploy per service", {
        "concurrent_applies": CONCURRENT, "concurrent_started": len(started), "concurrent_locked": len(refused),
        "cli_signals": KILLS, "sigkill": by_signal[signal.SIGKILL], "sigint": by_signal[signal.SIGINT],
        "sighup": by_signal[signal.SIGHUP], "interrupted_cli_jobs_named": named, "killed_cli_jobs_unnamed": unnamed,
        "cli_seconds": round(took, 2), "jobs": total, "overlapping_jobs": len(overlapping),
    })
    assert overlapping == []
