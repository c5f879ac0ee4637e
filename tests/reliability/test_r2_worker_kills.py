"""R2: kill -9 of the worker at every step of the compose and k3s pipelines, and at random times.

The real engine (apply, launch, locks, detached worker, job store) runs the test workload's steps
for a compose-mode service (file mode, unidesk-direct) and a k3s-mode one (--env dev,
k3sctl-managed), each step lasting a little while. After every kill: the job reads `interrupted`,
every state file parses, and the next apply runs (it takes the dead job's lock over).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time

from tests import apply_workload
from tests.conftest import wait_for
from unidesk_tui import jobs
from unidesk_tui.apply import apply, wait_job
from unidesk_tui.documents import JobEvent, JobRecord
from unidesk_tui.model import JOB_TERMINAL

RUNS = 50
STEP_S = 0.15
SERVICE = "backend-core"
PIPELINES = {"compose": {}, "k3s": {"env": "dev"}}


def corrupt_files(state_dir) -> list[str]:
    """Every state file that does not parse (job.json, events, catalog snapshot, locks)."""
    bad = []
    for d in jobs.jobs_root(state_dir).iterdir():
        if not jobs.JOB_ID_RE.fullmatch(d.name):
            continue
        checks = [(d / jobs.JOB_FILE, lambda b: JobRecord.model_validate_json(b)),
                  (d / jobs.CATALOG_FILE, json.loads)]
        for path, parse in checks:
            try:
                parse(path.read_bytes())
            except (OSError, ValueError):
                bad.append(str(path))
        events = d / jobs.EVENTS_FILE
        for line in events.read_bytes().splitlines() if events.exists() else []:
            try:
                JobEvent.model_validate_json(line)
            except ValueError:
                bad.append(f"{events}: {line[:60]!r}")
    for lock in (state_dir / "locks").glob("*.lock"):
        try:
            json.loads(lock.read_bytes())
        except ValueError:
            bad.append(str(lock))
    return bad


def step_running(ws, job_id: str, index: int) -> bool:
    rec = jobs.load_job(ws.state_dir, job_id)
    return rec.steps[index].status == "running" or rec.status in JOB_TERMINAL


def test_r2_kill_the_worker_at_every_step_and_at_random(ws, git_world, workload, figures):
    git_world.push_env("dev", git_world.manifest([{"id": SERVICE, "repo": git_world.service_url, "commitId": git_world.pushed[1]}],
                                                 environment="dev"))
    (git_world.workspace / "deploy.json").write_text(
        git_world.manifest([{"id": SERVICE, "repo": git_world.service_url, "commitId": git_world.pushed[1]}]))
    (workload / "behaviour.json").write_text(json.dumps({"stepSeconds": STEP_S}))
    rng = random.Random(int(os.environ.get("UNIDESK_R2_SEED", "13")))
    plan = [(p, "step", i) for p in PIPELINES for i in range(4)]
    plan += [(list(PIPELINES)[i % 2], "random", None) for i in range(RUNS - len(plan))]
    killed_mid_job = interrupted = ended_first = next_ran = 0
    steps_hit: set[tuple[str, str]] = set()
    for pipeline, how, index in plan:
        doc = apply(ws, force=True, read_live=apply_workload.read_live, **PIPELINES[pipeline])
        assert doc.ok, doc.errors  # the next apply runs, whatever the last kill left
        next_ran += 1
        rec = jobs.load_job(ws.state_dir, doc.jobId)
        if how == "step":
            wait_for(lambda: step_running(ws, doc.jobId, index), f"step {index} to run", timeout=30, interval=0.01)
        else:
            time.sleep(rng.uniform(0, 5 * STEP_S))
        rec = jobs.load_job(ws.state_dir, doc.jobId)
        running = [s.name for s in rec.steps if s.status == "running"]
        os.kill(rec.workerPid, signal.SIGKILL)
        if rec.status in JOB_TERMINAL:
            ended_first += 1
            continue
        killed_mid_job += 1
        steps_hit.update((pipeline, name) for name in running)
        end = wait_for(lambda: (r := jobs.load_job(ws.state_dir, doc.jobId)).status in JOB_TERMINAL and r, "the job to end")
        interrupted += end.status == "interrupted"
        assert end.status == "interrupted", end
    last = apply(ws, force=True, read_live=apply_workload.read_live)
    assert last.ok, last.errors
    assert wait_job(ws.state_dir, last.jobId, poll=0.05).status == "succeeded"
    bad = corrupt_files(ws.state_dir)
    figures("R2", "worker kill -9", {
        "runs": RUNS, "killed_mid_job": killed_mid_job, "ended_before_the_kill": ended_first,
        "interrupted": interrupted, "steps_hit": len(steps_hit), "corrupt_files": len(bad),
        "next_apply_ran": next_ran + 1, "jobs": len(jobs.list_jobs(ws.state_dir)),
    })
    assert bad == [] and interrupted == killed_mid_job
    assert {(p, s) for p in PIPELINES for s in ("inspect", "build", "rollout", "verify")} <= steps_hit
