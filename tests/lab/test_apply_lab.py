"""`deploy apply` end to end in the lab: the CLI starts a detached worker that fetches, builds and
rolls out compose services on their own hosts over SSH, then verifies them live.

Real programs throughout: sshd, dockerd, docker compose, git over HTTP, the providers' egress
proxy, the microservice proxy. Test-only commits (a failing build, a health that reports an old
commit, a slow build) are pushed to their own branches of the lab's sample repository.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_for

sys.path.insert(0, str(Path(__file__).parent))
from helpers_live import (  # noqa: E402
    apply,
    clone_sample,
    host_snapshot,
    job_status,
    processes,
    push_variant,
    running_commit,
    service,
    ssh,
    write_manifest,
)

from unidesk_tui import jobs, locks  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.slow]

MAIN, D518 = "main-server", "D518"


def job_log(state: Path, job_id: str) -> list:
    return jobs.read_events(state, job_id, max_bytes=64 * 1024 * 1024)[0]


def steps(job: dict) -> dict[tuple[str, str], dict]:
    return {(s["service"], s["name"]): s for s in job["steps"]}


@pytest.fixture(scope="module")
def branches(lab, tmp_path_factory) -> dict[str, str]:
    """Commits on test branches of sample-service: name -> full SHA."""
    work = clone_sample(lab, tmp_path_factory.mktemp("sample"))
    old = lab["content"]["old"]
    variants = {
        "broken": ("Dockerfile", lambda t: t + 'RUN ["/bin/busybox", "false"]\n'),
        # A fresh ENV value per run keeps the slow step out of any earlier run's build cache.
        "slow": (
            "Dockerfile",
            lambda t: t + f'ENV TEST_NONCE={secrets.token_hex(8)}\nRUN ["/bin/busybox", "sleep", "40"]\n',
        ),
        # Health that ignores the deploy stamp and reports an old commit.
        "stale-health": ("app/www/cgi-bin/health", lambda t: t.replace('"${UNIDESK_DEPLOY_COMMIT}"', f'"{old}"')),
    }
    return {
        name: push_variant(work, f"test-apply-{name}", lab["content"]["new"], rel, edit, f"test: {name}")
        for name, (rel, edit) in variants.items()
    }


@pytest.fixture(scope="module")
def restore(lab, tmp_path_factory):
    """Leave backend-core and d518-worker running the seeded `old` commit for later modules."""
    yield
    tmp = tmp_path_factory.mktemp("restore")
    manifest = write_manifest(
        tmp / "deploy.json",
        lab["content"]["sampleRepo"],
        {"backend-core": lab["content"]["old"], "d518-worker": lab["content"]["old"]},
    )
    apply(lab, tmp / "state", manifest, "--wait")


def ensure_old(lab, tmp_path: Path) -> None:
    old = lab["content"]["old"]
    todo = {sid: old for sid in ("backend-core", "d518-worker") if running_commit(lab, sid) != old}
    if todo:
        rc, doc = apply(
            lab,
            tmp_path / "setup-state",
            write_manifest(tmp_path / "setup.json", lab["content"]["sampleRepo"], todo),
            "--wait",
        )
        assert rc == 0, doc


def egress_entries(lab, host: str, since: int) -> list[dict]:
    with open(lab["layout"].egress_log(host), "rb") as fh:
        fh.seek(since)
        return [json.loads(line) for line in fh.read().splitlines() if line.strip()]


def egress_size(lab, host: str) -> int:
    path = lab["layout"].egress_log(host)
    return path.stat().st_size if path.exists() else 0


def test_apply_old_to_new_on_main_and_d518_then_noop_then_force(lab, tmp_path, restore):
    ensure_old(lab, tmp_path)
    content = lab["content"]
    new = content["new"]
    state = tmp_path / "state"
    manifest = write_manifest(
        tmp_path / "deploy.json", content["sampleRepo"], {"backend-core": new, "d518-worker": new}
    )
    egress_mark = egress_size(lab, D518)

    rc, doc = apply(lab, state, manifest, "--force", "--wait")  # --force: a commit built before would be reused
    assert rc == 0 and doc["ok"] and doc["status"] == "succeeded", json.dumps(doc)[:4000]
    job = doc["job"]
    assert all(s["status"] == "succeeded" and s["events"] > 0 for s in job["steps"]), job["steps"]
    assert steps(job)[("d518-worker", "verify")]["status"] == "succeeded"
    assert running_commit(lab, "backend-core") == new and running_commit(lab, "d518-worker") == new
    log = job_log(state, doc["jobId"])
    texts = [e.text for e in log if e.service == "d518-worker"]
    assert "target_build_proxy_probe=ok" in texts
    assert any(
        t.startswith("target_build_command=")
        and "--build-arg HTTP_PROXY=http://127.0.0.1:18789" in t
        and "--network host" in t
        for t in texts
    )
    assert any(t.startswith("verified:") for t in texts)
    assert any(e.service == "backend-core" and e.text.startswith("verified:") for e in log)
    # The provider's fetch went through its egress proxy (the proxy's own log says so).
    through = [
        e
        for e in egress_entries(lab, D518, egress_mark)
        if "sample-service.git" in e.get("target", "") and e.get("result") == "ok"
    ]
    assert any("git-upload-pack" in e["target"] for e in through), through

    rc, doc = apply(lab, state, manifest, "--wait")
    assert rc == 0 and doc["status"] == "succeeded"
    assert {(s["service"], s["name"], s["status"]) for s in doc["job"]["steps"]} == {
        ("backend-core", "noop", "skipped"),
        ("d518-worker", "noop", "skipped"),
    }

    rc, doc = apply(
        lab,
        state,
        write_manifest(tmp_path / "one.json", content["sampleRepo"], {"backend-core": new}),
        "--force",
        "--wait",
    )
    assert rc == 0 and doc["status"] == "succeeded", json.dumps(doc)[:4000]
    texts = [e.text for e in job_log(state, doc["jobId"]) if e.step == "build"]
    assert f"target_build_cache_from={service(lab, 'backend-core')['build']['image']}" in texts
    assert any("CACHED" in t for t in texts), "a forced rebuild of the same commit reuses the build cache"
    assert running_commit(lab, "backend-core") == new


def test_provider_proxy_down_fails_at_the_probe_and_changes_nothing(lab, tmp_path, restore):
    from unidesk_lab import lab as labapi

    ensure_old(lab, tmp_path)
    state = tmp_path / "state"
    manifest = write_manifest(
        tmp_path / "deploy.json", lab["content"]["sampleRepo"], {"d518-worker": lab["content"]["new"]}
    )
    before = host_snapshot(lab, D518)
    labapi.stop_egress(lab["dir"], D518)
    try:
        rc, doc = apply(lab, state, manifest, "--wait")
    finally:
        labapi.start_egress(lab["dir"], D518)
    assert rc == 1 and doc["status"] == "failed"
    assert [e["code"] for e in doc["errors"]] == ["proxy_probe_failed"]
    st = steps(doc["job"])
    assert st[("d518-worker", "proxy-probe")]["status"] == "failed"
    assert all(
        s["status"] == "skipped" for (sid, name), s in st.items() if name in ("source", "build", "rollout", "verify")
    )
    assert host_snapshot(lab, D518) == before
    assert running_commit(lab, "d518-worker") == lab["content"]["old"]


def test_build_failure_and_stale_health_fail_and_keep_their_logs(lab, tmp_path, branches, restore):
    ensure_old(lab, tmp_path)
    state = tmp_path / "state"
    repo = lab["content"]["sampleRepo"]
    rc, doc = apply(
        lab, state, write_manifest(tmp_path / "broken.json", repo, {"backend-core": branches["broken"]}), "--wait"
    )
    assert rc == 1 and doc["status"] == "failed" and [e["code"] for e in doc["errors"]] == ["build_failed"]
    assert steps(doc["job"])[("backend-core", "rollout")]["status"] == "skipped"
    assert any(e.step == "build" and "false" in e.text for e in job_log(state, doc["jobId"]))
    assert running_commit(lab, "backend-core") == lab["content"]["old"]

    rc, doc = apply(
        lab, state, write_manifest(tmp_path / "stale.json", repo, {"backend-core": branches["stale-health"]}), "--wait"
    )
    assert rc == 1 and doc["status"] == "failed" and [e["code"] for e in doc["errors"]] == ["verification_failed"]
    assert steps(doc["job"])[("backend-core", "rollout")]["status"] == "succeeded"
    assert any("health deploy.commit is " + lab["content"]["old"] in e.text for e in job_log(state, doc["jobId"]))
    # job status still serves the failed job and its log
    status = job_status(lab, state, doc["jobId"], tail_bytes=30000)
    assert status["job"]["status"] == "failed" and status["log"]["events"]


def test_concurrent_applies_lock_and_a_killed_worker_is_interrupted(lab, tmp_path, branches, restore):
    ensure_old(lab, tmp_path)
    state = tmp_path / "state"
    manifest = write_manifest(tmp_path / "slow.json", lab["content"]["sampleRepo"], {"backend-core": branches["slow"]})
    rc, first = apply(lab, state, manifest)
    assert rc == 0 and first["ok"], first
    job_id = first["jobId"]
    wait_for(
        lambda: steps(jobs.load_job(state, job_id).model_dump())[("backend-core", "build")]["status"] == "running",
        "the slow build to start",
    )

    rc, second = apply(lab, state, manifest)
    assert rc == 1 and [e["code"] for e in second["errors"]] == ["locked"] and job_id in second["errors"][0]["message"]

    worker = jobs.load_job(state, job_id).workerPid
    assert locks.read_lock(state, "file", "backend-core").pid == worker
    os.kill(worker, signal.SIGKILL)
    status = job_status(lab, state, job_id)
    assert status["job"]["status"] == "interrupted", status["job"]
    assert any(e["step"] == "build" for e in status["log"]["events"])  # its log is kept
    assert running_commit(lab, "backend-core") == lab["content"]["old"]
    # The orphaned remote build may still finish and retag the image: let it end first, then
    # remove the build context the killed worker could not clean up (other tests count them).
    wait_for(
        lambda: not processes("busybox sleep 40") and not processes("-t unidesk-backend-core:main"),
        "the orphaned build to end",
        120,
    )
    for e in job_log(state, job_id):
        if e.text.startswith("target_build_context="):
            ssh(lab, MAIN, ["rm", "-rf", "--", e.text.split("=", 1)[1].split(" ", 1)[0]])

    # The dead holder's lock is taken over by the next apply (which is logged).
    rc, doc = apply(
        lab,
        state,
        write_manifest(tmp_path / "old.json", lab["content"]["sampleRepo"], {"backend-core": lab["content"]["old"]}),
        "--force",
        "--wait",
    )
    assert rc == 0 and doc["status"] == "succeeded", json.dumps(doc)[:3000]
    assert any("took over" in w and job_id in w for w in doc["job"]["warnings"])
