"""R1, R2, R5 and R6 on the lab's hosts: the real CLI, launch handshake, detached worker, SSH,
target locks, dockerd/compose on main-server and containerd plus the (emulated) Kubernetes API on
D601, through the real compose and k3s pipelines. The workload suites beside this file give the
volume; these prove the same faults hold for the real pipelines.

Conventions of the session lab kept here: backend-core is left running the seeded `old` commit;
besides old and new (`--force` rebuilds them from the target's build cache) only R6 builds, two
commits of its own (branches test-r6-*).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.lab.helpers_live import host_snapshot, ssh, write_manifest
from tests.reliability.test_r2_worker_kills import corrupt_files
from unidesk_tui import jobs
from unidesk_tui.apply import apply, wait_job
from unidesk_tui.errors import ErrorCode
from unidesk_tui.model import JOB_TERMINAL
from unidesk_tui.workspace import Workspace

pytestmark = [pytest.mark.lab, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = {"sid": "backend-core", "host": "main-server"}
K3S = {"sid": "code-queue", "host": "D601"}
JOB_ID = re.compile(r"\b[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}\b")


# ---- shared ------------------------------------------------------------------------------------


def start_cli(lab: dict, state: Path, manifest: Path, *args: str) -> subprocess.Popen:
    """`unidesk deploy apply --file MANIFEST ARGS` as its own process (no --wait: it returns once launched)."""
    argv = [sys.executable, "-m", "unidesk_tui.cli", "--workspace", str(lab["workspace"]), "--state-dir", str(state)]
    return subprocess.Popen(
        [*argv, "deploy", "apply", "--file", str(manifest), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO_ROOT,
    )


def document(proc: subprocess.Popen) -> dict | None:
    out = proc.communicate(timeout=300)[0].decode()
    return json.loads(out) if out.strip() else None


def job_ids(state: Path) -> set[str]:
    root = jobs.jobs_root(state)
    return {d.name for d in root.iterdir() if jobs.JOB_ID_RE.fullmatch(d.name)} if root.exists() else set()


def all_ended(*states: Path) -> bool:
    return all(r.status in JOB_TERMINAL for s in states for r in jobs.list_jobs(s))


def ts(text: str) -> float:
    """An ISO time of job.json (seconds) or of an event (milliseconds) as a Unix time."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in text else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()


def events(state: Path, job_id: str) -> list[dict]:
    path = jobs.job_dir(state, job_id) / jobs.EVENTS_FILE
    return [json.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def health(lab: dict, sid: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{lab['msproxyUrl']}/api/microservices/{sid}/health", timeout=5) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def serving(lab: dict, sid: str) -> str | None:
    """The commit the service answers its health check with, when it answers `ok`."""
    body = health(lab, sid)
    return body["deploy"]["commit"] if body and body.get("status") == "ok" else None


def target(lab: dict, host: str) -> dict:
    return next(t for t in json.loads(Path(lab["config"]).read_text())["targets"] if t["id"] == host)


def contexts_of(lab: dict, host: str, sid: str) -> list[str]:
    """Build contexts of `sid` (any environment) left on the host."""
    proc = ssh(lab, host, ["ls", "-A", "--", f"{target(lab, host)['workDir']}/contexts"], check=False)
    return [n for n in proc.stdout.decode().split() if n.startswith((f"{sid}-", f"file--{sid}-"))]


def temp_files(state: Path) -> list[str]:
    return [str(p) for p in state.rglob("*.tmp")]


def target_temp_files(lab: dict, host: str, sid: str) -> list[str]:
    """Half-written files the service's jobs could leave in the host's work dir: temp files, and its
    `docker save` tarballs (k3s-import)."""
    work = target(lab, host)["workDir"]
    argv = ["find", work, "(", "-name", "*.tmp", "-o", "-path", f"{work}/images/file--{sid}-*", ")", "-print"]
    return ssh(lab, host, argv, check=False).stdout.decode().split()


# ---- R1 ----------------------------------------------------------------------------------------

R1_CONCURRENT = 20
R1_SIGNALS = (signal.SIGKILL, signal.SIGINT, signal.SIGKILL)


def windows(states: list[Path]) -> dict[str, dict]:
    """Every job's time on the controller: job.json (second resolution) and its event log (ms)."""
    out = {}
    for state in states:
        for rec in jobs.list_jobs(state):
            evs = events(state, rec.id)
            out[rec.id] = {
                "record": (ts(rec.startedAt), ts(rec.endedAt)) if rec.startedAt and rec.endedAt else None,
                "events": (ts(evs[0]["ts"]), ts(evs[-1]["ts"])) if evs else None,
                "rollout": [ts(e["ts"]) for e in evs if e["step"] == "rollout" and e["text"] == "step rollout started"],
                "status": rec.status,
            }
    return out


def overlapping(spans: dict[str, tuple[float, float] | None]) -> list[tuple[str, str]]:
    """Pairs of jobs whose spans intersect (strictly: a job ending in the second another starts is
    not an overlap at job.json's one-second resolution)."""
    items = sorted((s, j) for j, s in spans.items() if s)
    return [(a, b) for i, (sa, a) in enumerate(items) for sb, b in items[i + 1 :] if sb[0] < sa[1] and sa[0] < sb[1]]


def container_creates(lab: dict, since: float, until: float) -> list[float]:
    """When dockerd on main-server created a container of the compose service (its own event clock)."""
    project = "{{index .Actor.Attributes \"com.docker.compose.project\"}}"
    fmt = "{{.Action}} {{.TimeNano}} " + project
    out = ssh(
        lab,
        COMPOSE["host"],
        [
            "docker",
            "events",
            "--since",
            f"{since:.3f}",
            "--until",
            f"{until:.3f}",
            "--filter",
            "type=container",
            "--filter",
            f"label=com.docker.compose.service={COMPOSE['sid']}",
            "--format",
            fmt,
        ],
    ).stdout.decode()
    return [int(t) / 1e9 for action, t, proj in (line.split() for line in out.splitlines()) if action == "create" and proj == "unidesk"]


def test_r1_lab_concurrent_applies_and_interrupted_launches_never_overlap(lab, tmp_path, figures):
    """20 concurrent `deploy apply --force` CLIs of backend-core over two state dirs (local locks
    within one, the target lock across them), then CLIs killed or interrupted during launch."""
    sid, old = COMPOSE["sid"], lab["content"]["old"]
    manifest = write_manifest(tmp_path / "deploy.json", lab["content"]["sampleRepo"], {sid: old})
    states = [tmp_path / "state-a", tmp_path / "state-b"]
    rng = random.Random(int(os.environ.get("UNIDESK_R1_SEED", "13")))
    since = time.time()

    procs = [start_cli(lab, states[i % 2], manifest, "--force") for i in range(R1_CONCURRENT)]
    with ThreadPoolExecutor(R1_CONCURRENT) as pool:
        docs = list(pool.map(document, procs))
    wait_for(lambda: all_ended(*states), "every job to end", timeout=300, interval=0.2)
    started = [d for d in docs if d and d.get("jobId")]
    refused = [d for d in docs if d and not d["ok"]]
    assert len(started) + len(refused) == R1_CONCURRENT, docs
    assert all([e["code"] for e in d["errors"]] == [ErrorCode.LOCKED] for d in refused), refused
    existing = job_ids(states[0]) | job_ids(states[1])
    assert {d["jobId"] for d in started} == existing  # every printed id exists; a refusal leaves no job
    # Each refusal names its holder: a job that exists, or (across state dirs) a worker that held the
    # local lock while the target lock refused it, so its job was never recorded.
    holders = [JOB_ID.findall(e["message"]) for d in refused for e in d["errors"]]
    assert all(len(h) == 1 for h in holders), refused
    never_recorded = {h[0] for h in holders} - existing
    target_refusals = sum("on target" in e["message"] for d in refused for e in d["errors"])
    assert len(never_recorded) <= target_refusals, (never_recorded, refused)
    concurrent_s = time.time() - since

    # CLIs killed (SIGKILL) or interrupted (SIGINT) at random points of their launch, each raced by another apply.
    t0 = time.monotonic()
    solo = document(start_cli(lab, states[0], manifest, "--force"))
    took = time.monotonic() - t0
    assert solo and solo["ok"], solo
    wait_for(lambda: all_ended(*states), "every job to end", timeout=120, interval=0.2)
    named = unnamed = 0
    for sig in R1_SIGNALS:
        before = job_ids(states[0])
        a = start_cli(lab, states[0], manifest, "--force")
        time.sleep(rng.uniform(0.1 * took, 0.9 * took))
        a.send_signal(sig)
        b = start_cli(lab, states[0], manifest, "--force")
        doc_a, doc_b = document(a), document(b)
        wait_for(lambda: all_ended(*states), "every job to end", timeout=120, interval=0.2)
        new = job_ids(states[0]) - before
        printed = {d["jobId"] for d in (doc_a, doc_b) if d and d.get("jobId")}
        assert printed <= new, (sig, doc_a, doc_b)
        for d in (doc_a, doc_b):
            if d and not d["ok"] and not d.get("jobId"):
                assert [e["code"] for e in d["errors"]][0] in (ErrorCode.INTERRUPTED, ErrorCode.LOCKED), d
                assert all(set(JOB_ID.findall(e["message"])) <= new | before for e in d["errors"]), d
        if sig == signal.SIGKILL:
            assert len(new - printed) <= 1, (doc_a, doc_b)  # the killed CLI's job, run by its own worker
            unnamed += len(new - printed)
        else:
            assert new == printed, (doc_a, doc_b)  # an interrupted CLI printed its job's id, or left no job
            named += bool(doc_a and doc_a.get("jobId"))
    until = time.time() + 1
    signals_s = until - 1 - since - concurrent_s

    spans = windows(states)
    by_record = overlapping({j: w["record"] for j, w in spans.items()})
    by_events = overlapping({j: w["events"] for j, w in spans.items()})
    # The target's own account: one container created per job that rolled out, inside that job's time.
    creates = container_creates(lab, since, until)
    rolled = {j for j, w in spans.items() if w["rollout"]}
    per_job = {j: sum(w["events"][0] <= c <= w["events"][1] for c in creates) for j, w in spans.items() if w["events"]}
    outside = [c for c in creates if not any(w["events"] and w["events"][0] <= c <= w["events"][1] for w in spans.values())]
    statuses = [w["status"] for w in spans.values()]
    figures("R1-lab", "one deploy per service, on a lab host", {
        "concurrent_clis": R1_CONCURRENT, "state_dirs": len(states), "concurrent_started": len(started),
        "concurrent_locked": len(refused), "locked_by_target_lock": target_refusals,
        "holders_never_recorded": len(never_recorded), "concurrent_seconds": round(concurrent_s, 1), "cli_signals": len(R1_SIGNALS),
        "interrupted_cli_jobs_named": named, "killed_cli_jobs_unnamed": unnamed, "cli_seconds": round(took, 2), "signals_seconds": round(signals_s, 1),
        "jobs": len(spans), "succeeded": statuses.count("succeeded"), "container_rollouts": len(creates),
        "overlapping_jobs_record": len(by_record), "overlapping_jobs_events": len(by_events),
        "rollouts_outside_a_job": len(outside), "jobs_with_two_rollouts": sum(n > 1 for n in per_job.values()),
    })
    assert by_record == [] and by_events == [], (by_record, by_events)
    assert outside == [] and all(per_job[j] == 1 for j in rolled), (creates, per_job)
    assert len(creates) == len(rolled) and statuses.count("succeeded") == len(spans), spans
    assert serving(lab, sid) == old


# ---- R2 ----------------------------------------------------------------------------------------

R2_KILL_AFTER_S = 0.4  # into a step, at most: half its profiled length when shorter
R2_ATTEMPTS = 3
R2_INSTANT_S = 0.05  # a step the profile saw end sooner than a kill can follow its start


def step_started(state: Path, job_id: str, step: str) -> bool:
    rec = jobs.load_job(state, job_id)
    if rec.status in JOB_TERMINAL:
        return True
    return any(e["step"] == step and e["text"] == f"step {step} started" for e in events(state, job_id))


def r2_pipeline(lab: dict, tmp: Path, pipeline: dict) -> dict:
    """Kill the worker of one apply per step of the service's pipeline, inside that step; after each
    kill the job reads `interrupted` and the service still serves the previous or the new commit,
    healthy; the next apply (the next run's) launches; at the end one more apply succeeds."""
    sid, host = pipeline["sid"], pipeline["host"]
    old, new = lab["content"]["old"], lab["content"]["new"]
    ws = Workspace.at(lab["workspace"], tmp / "state")
    commits = {old: new, new: old}

    def run(commit: str, force: bool):
        manifest = write_manifest(tmp / f"{commit[:12]}.json", lab["content"]["sampleRepo"], {sid: commit})
        doc = apply(ws, file=manifest, force=force)
        assert doc.ok and doc.jobId, doc.errors
        return doc.jobId

    # The profile: one whole run that rebuilds (every step runs; the build hits the target's cache).
    # code-queue on k3s serves only once something applied it (the seed does not).
    profile = wait_job(ws.state_dir, run(commits.get(serving(lab, sid) or old, new), force=True), poll=0.05)
    assert profile.status == "succeeded", profile.result
    durations = {s.name: (s.durationMs or 0) / 1000 for s in profile.steps}
    hit, missed, instant, kills, ended_first = [], [], [], 0, 0
    for step, took in durations.items():
        # a step shorter than the kill's latency: aim earlier; one quicker than that cannot be hit
        # inside (the kill lands in a later step, right after its boundary): one try, counted apart
        for attempt in range(R2_ATTEMPTS if took >= R2_INSTANT_S else 1):
            before = wait_for(lambda: serving(lab, sid), f"{sid} to serve", timeout=60, interval=0.2)
            want = commits[before]
            job_id = run(want, force=step in ("source", "build"))  # without --force a built commit skips them
            wait_for(lambda: step_started(ws.state_dir, job_id, step), f"step {step}", timeout=120, interval=0.01)
            time.sleep(min(took / 2, R2_KILL_AFTER_S) / 4**attempt)
            rec = jobs.load_job(ws.state_dir, job_id)
            if rec.status in JOB_TERMINAL:
                ended_first += 1
                continue
            os.kill(rec.workerPid, signal.SIGKILL)
            kills += 1
            end = wait_for(
                lambda: (r := jobs.load_job(ws.state_dir, job_id)).status in JOB_TERMINAL and r, "the job to end"
            )
            assert end.status == "interrupted", (step, end.status, end.result)
            now = wait_for(lambda: serving(lab, sid), f"{sid} to serve after a kill in {step}", timeout=60, interval=0.2)
            assert now in (before, want), (step, now)
            if [s.name for s in end.steps if s.code == ErrorCode.INTERRUPTED] == [step]:
                hit.append(step)
                break
        else:
            (missed if took >= R2_INSTANT_S else instant).append(step)
    final = wait_job(ws.state_dir, run(commits[serving(lab, sid)], force=False), poll=0.05)
    return {
        "pipeline": [s.name for s in profile.steps],
        "hit": hit,
        "missed": missed,
        "instant": instant,
        "kills": kills,
        "ended_first": ended_first,
        "final": final,
        "serving": serving(lab, sid),
        "contexts": contexts_of(lab, host, sid) + target_temp_files(lab, host, sid),
        "state": ws.state_dir,
    }


def test_r2_lab_kill_the_worker_in_every_step_of_the_compose_and_k3s_pipelines(lab, tmp_path, figures):
    (tmp_path / "compose").mkdir()
    (tmp_path / "k3s").mkdir()
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(("compose", "k3s"), pool.map(lambda p: r2_pipeline(lab, tmp_path / p[0], p[1]),
                                                     [("compose", COMPOSE), ("k3s", K3S)])))
    # backend-core goes back to the seeded commit (a built one: a rollout only)
    if serving(lab, COMPOSE["sid"]) != lab["content"]["old"]:
        ws = Workspace.at(lab["workspace"], tmp_path / "compose" / "state")
        manifest = write_manifest(tmp_path / "old.json", lab["content"]["sampleRepo"], {COMPOSE["sid"]: lab["content"]["old"]})
        assert wait_job(ws.state_dir, apply(ws, file=manifest).jobId, poll=0.05).status == "succeeded"
    bad = [f for r in runs.values() for f in corrupt_files(r["state"])]
    tmp_left = [f for r in runs.values() for f in temp_files(r["state"])]
    locks_left = [str(p) for r in runs.values() for p in (r["state"] / "locks").glob("*.lock")]
    litter = [c for r in runs.values() for c in r["contexts"]]
    kills = sum(r["kills"] for r in runs.values())
    figures("R2-lab", "worker kill -9 in every step, on the lab's pipelines", {
        "compose_steps": len(runs["compose"]["pipeline"]), "k3s_steps": len(runs["k3s"]["pipeline"]),
        "kills": kills, "interrupted": kills, "steps_hit": sum(len(r["hit"]) for r in runs.values()),
        "steps_missed": sum(len(r["missed"]) for r in runs.values()),
        "instant_steps_killed_at_their_end": ", ".join(s for r in runs.values() for s in r["instant"]) or "none",
        "jobs_ended_before_the_kill": sum(r["ended_first"] for r in runs.values()),
        "serving_a_valid_version_after_each_kill": kills, "corrupt_files": len(bad), "temp_files_left": len(tmp_left),
        "locks_left": len(locks_left), "target_litter_left": len(litter),
        "next_apply_succeeded": sum(r["final"].status == "succeeded" for r in runs.values()),
    })
    assert all(r["final"].status == "succeeded" for r in runs.values()), {p: r["final"].result for p, r in runs.items()}
    assert bad == [] and tmp_left == [] and locks_left == [] and litter == [], (bad, tmp_left, locks_left, litter)
    assert all(r["missed"] == [] for r in runs.values()), {p: r["missed"] for p, r in runs.items()}


# ---- R5 ----------------------------------------------------------------------------------------


def cli(lab: dict, state: Path, *args: str, env: dict[str, str] | None = None, workspace: Path | None = None) -> tuple[dict, str]:
    """One CLI run: its JSON document and its whole output (stdout + stderr) for leak scans."""
    argv = [sys.executable, "-m", "unidesk_tui.cli", "--workspace", str(workspace or lab["workspace"]), "--state-dir", str(state)]
    proc = subprocess.run([*argv, *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
                          env={**os.environ, **(env or {})})
    return json.loads(proc.stdout), proc.stdout + proc.stderr


# Every Deployment by its generation (bumped by a change of its spec, not by the controller's status
# updates: a pod turning ready meanwhile is not a change of ours) and its labels and annotations (the
# deploy stamps), every other object by its resourceVersion.
KUBE_OBJECTS = """
import json, urllib.request
out = {}
for path in ("/apis/apps/v1/deployments", "/api/v1/services", "/api/v1/namespaces", "/api/v1/configmaps"):
    items = json.load(urllib.request.urlopen("http://127.0.0.1:6443" + path, timeout=10))["items"]
    key = "generation" if "deployments" in path else "resourceVersion"
    out[path] = sorted((m.get("namespace", ""), m["name"], m.get(key), json.dumps([m.get("labels"), m.get("annotations")],
                        sort_keys=True)) for m in (i["metadata"] for i in items))
print(json.dumps(out, sort_keys=True))
"""


def runtime(lab: dict) -> dict[str, str]:
    """Every host's containers and images, and every Kubernetes object's version."""
    kube = ssh(lab, K3S["host"], ["python3", "-c", KUBE_OBJECTS]).stdout.decode()
    return {**{h: host_snapshot(lab, h) for h in ("main-server", "D601", "D518")}, "kube": kube}


R5_ATTEMPTS = {
    "apply --env prod": ["--env", "prod"],
    "apply --env prod --dry-run": ["--env", "prod", "--dry-run"],
    "apply --env prod --service backend-core --force": ["--env", "prod", "--service", "backend-core", "--force"],
    "apply --env dev (out-of-slice services listed)": ["--env", "dev"],
    "apply --env dev --service decision-center": ["--env", "dev", "--service", "decision-center"],
    "apply --env dev --service d518-worker": ["--env", "dev", "--service", "d518-worker"],
    "apply --env dev --service code-queue-mgr --force": ["--env", "dev", "--service", "code-queue-mgr", "--force"],
}


def test_r5_lab_prod_and_out_of_slice_applies_are_refused_and_the_runtime_is_unchanged(lab, tmp_path, figures):
    state = tmp_path / "state"
    plan, _ = cli(lab, state, "deploy", "plan", "--env", "prod", "--out", str(tmp_path / "prod.plan"))
    assert plan["errors"] == [], plan
    before = runtime(lab)
    attempts = {name: ["deploy", "apply", *args] for name, args in R5_ATTEMPTS.items()}
    attempts["apply --plan (a saved prod plan)"] = ["deploy", "apply", "--plan", str(tmp_path / "prod.plan")]
    with ThreadPoolExecutor(4) as pool:
        docs = dict(zip(attempts, pool.map(lambda argv: cli(lab, state, *argv)[0], attempts.values())))
    after = runtime(lab)
    # node-exporter (image-only) is listed in deploy/dev too: `unsupported_service` beside the slice's refusals
    expected = {ErrorCode.PROD_APPLY_DISABLED, ErrorCode.SERVICE_NOT_ENABLED, ErrorCode.ENVIRONMENT_MISMATCH,
                ErrorCode.UNSUPPORTED_SERVICE}
    codes = {name: [e["code"] for e in d["errors"]] for name, d in docs.items()}
    changed = sorted(k for k in before if before[k] != after[k])
    figures("R5-lab", "production and out-of-slice applies, on the lab's hosts", {
        "attempts": len(docs), "refused": sum(not d["ok"] and bool(c) and set(c) <= expected for d, c in zip(docs.values(), codes.values())),
        "jobs_created": len(job_ids(state)), "hosts_and_kube_diffed": len(before), "runtimes_changed": len(changed),
        "locks_left": len(list((state / "locks").glob("*.lock"))),
    })
    assert all(not d["ok"] and not d.get("jobId") for d in docs.values()), docs
    assert all(c and set(c) <= expected for c in codes.values()), codes
    assert changed == [] and job_ids(state) == set(), changed


# ---- R6 ----------------------------------------------------------------------------------------

# Each secret is planted where an operator's would be; none is in the repository as such (the build
# output decodes them at build time), so finding one anywhere means our code copied it there.
R6 = {
    "url": "R6urlCred7Qx",  # userinfo of a repository URL (deploy.json and config.json)
    "operator_env": "R6npmTok3nZw",  # NPM_TOKEN of the operator's environment, printed by the build
    "build_password": "R6buildPw9Kd",  # `db_password=…` printed by the build
    "build_bearer": "R6bearer4Lm",  # `Authorization: Bearer …` printed by the build
    "build_url": "R6cloneCred2Vb",  # a clone URL with credentials printed by the build
    "service_env": "R6svcEnvPw5Hn",  # the running container's environment (compose)
}
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@lab.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@lab.invalid", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def decoded(value: str) -> str:
    import base64

    return f"$(echo {base64.b64encode(value.encode()).decode()} | base64 -d)"


def secret_commits(lab: dict, work: Path) -> dict[str, str]:
    """Test branches of sample-service whose build prints the build secrets: one passing, one failing."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True, text=True,
                              env=GIT_ENV).stdout.strip()

    subprocess.run(["git", "clone", "-q", str(lab["layout"].git_root / "sample-service.git"), str(work)], check=True,
                   env=GIT_ENV)
    prints = (f"echo using {decoded(R6['operator_env'])}; echo db_password={decoded(R6['build_password'])}; "
              f"echo Authorization: Bearer {decoded(R6['build_bearer'])}; "
              f"echo cloning http://builder:{decoded(R6['build_url'])}@git.lab/sample.git")
    out = {}
    for name, tail in (("ok", ""), ("fail", "; exit 3")):
        git("checkout", "-q", "-B", f"test-r6-{name}", lab["content"]["new"])
        dockerfile = work / "Dockerfile"
        # a fresh nonce per session keeps the RUN step out of the build cache: its output is printed
        dockerfile.write_text(dockerfile.read_text() + f"ENV R6_NONCE={os.urandom(6).hex()}\nRUN {prints}{tail}\n")
        git("commit", "-q", "-am", f"test: r6 {name}")
        out[name] = git("rev-parse", "HEAD")
        git("push", "-q", "--force", "origin", f"HEAD:refs/heads/test-r6-{name}")
    return out


def target_files_with(lab: dict, host: str, paths: list[str]) -> list[str]:
    """`grep -rlF` for every secret under the host's paths."""
    argv = ["grep", "-rlF", *(a for s in R6.values() for a in ("-e", s)), "--", *paths]
    return ssh(lab, host, argv, check=False).stdout.decode().split()


def test_r6_lab_planted_secrets_reach_no_state_file_output_or_target_record(lab, tmp_path, figures):
    sid, host = COMPOSE["sid"], COMPOSE["host"]
    repo, old = lab["content"]["sampleRepo"], lab["content"]["old"]
    state = tmp_path / "state"
    env = {"NPM_TOKEN": R6["operator_env"]}
    outputs: list[str] = []
    commits = secret_commits(lab, tmp_path / "sample")

    # URL credentials: in deploy.json and in config.json, refused and never echoed.
    with_cred = repo.replace("http://", f"http://builder:{R6['url']}@")
    bad = write_manifest(tmp_path / "cred.json", with_cred, {sid: old})
    for argv in (["deploy", "plan", "--file", str(bad)], ["deploy", "apply", "--file", str(bad)]):
        doc, text = cli(lab, state, *argv, env=env)
        outputs.append(text)
        assert not doc["ok"] and {e["code"] for e in doc["errors"]} == {ErrorCode.INVALID_VALUE}, doc
    ws = tmp_path / "workspace"
    ws.mkdir()
    config = json.loads(Path(lab["config"]).read_text())
    next(m for m in config["microservices"] if m["id"] == sid)["repository"]["url"] = with_cred
    (ws / "config.json").write_text(json.dumps(config))
    doc, text = cli(lab, state, "deploy", "plan", "--file", str(write_manifest(tmp_path / "m.json", repo, {sid: old})),
                    env=env, workspace=ws)
    outputs.append(text)
    assert doc["errors"] and not doc.get("ok", False), doc

    # A secret in the service's own environment, and builds printing secrets (one passes, one fails).
    compose_file = Path(next(m for m in config["microservices"] if m["id"] == sid)["compose"]["file"])
    original = compose_file.read_text()
    compose_file.write_text(original.replace(f"      UNIDESK_DEPLOY_SERVICE_ID: {sid}\n",
                                             f"      UNIDESK_DEPLOY_SERVICE_ID: {sid}\n      R6_DB_PASSWORD: {R6['service_env']}\n", 1))
    ended = {}
    try:
        for name in ("ok", "fail"):
            manifest = write_manifest(tmp_path / f"{name}.json", repo, {sid: commits[name]})
            doc, text = cli(lab, state, "deploy", "apply", "--file", str(manifest), "--wait", env=env)
            outputs.append(text)
            ended[name] = doc["job"]["status"]
            for argv in (["job", "status", doc["jobId"], "--tail-bytes", "2000000"], ["job", "list"]):
                outputs.append(cli(lab, state, *argv, env=env)[1])
        # the live read sees the planted env of the running container
        outputs.append(cli(lab, state, "deploy", "check", "--file", str(manifest), env=env)[1])
    finally:
        compose_file.write_text(original)
        doc, text = cli(lab, state, "deploy", "apply", "--file", str(write_manifest(tmp_path / "old.json", repo, {sid: old})),
                        "--wait", env=env)
        outputs.append(text)
    assert ended == {"ok": "succeeded", "fail": "failed"}, ended
    assert doc["job"]["status"] == "succeeded", doc
    assert serving(lab, sid) == old

    files = [p for p in state.rglob("*") if p.is_file()]
    leaks = [f"{name} in {p}" for p in files for name, s in R6.items() if s.encode() in p.read_bytes()]
    leaks += [f"{name} in an output" for text in outputs for name, s in R6.items() if s in text]
    work_dir = target(lab, host)["workDir"]
    records = f"{work_dir}/provenance"
    leaks += [f"on {host}: {p}" for p in target_files_with(lab, host, [records, f"{compose_file.parent}/unidesk-deploy.{sid}.override.yml"])]
    record_files = ssh(lab, host, ["find", records, "-type", "f"]).stdout.decode().split()
    masked = sum(p.read_text().count("***") for p in files if p.name == jobs.EVENTS_FILE)
    figures("R6-lab", "planted secrets, on the lab's pipelines", {
        "secrets_planted": len(R6), "state_files_scanned": len(files), "outputs_scanned": len(outputs),
        "target_provenance_records_scanned": len(record_files), "masked_in_event_logs": masked, "leaks": len(leaks),
    })
    assert leaks == [], leaks
    assert masked >= 4  # the build printed them: masked, not lost
