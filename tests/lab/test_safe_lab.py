"""Safe change in the lab (issue 12): cancel, and what it leaves behind on the target.

Real programs throughout: the CLI, the detached worker, sshd, dockerd and its BuildKit, compose,
git over HTTP, the microservice proxy. Test-only commits are pushed to their own branches of the
lab's sample repository.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_for

sys.path.insert(0, str(Path(__file__).parent))
from helpers_live import (  # noqa: E402
    apply,
    cli,
    cli_argv,
    clone_sample,
    kube_request,
    processes,
    push_variant,
    running_commit,
    service,
    ssh,
    workspace_with,
    write_manifest,
)

from unidesk_tui import jobs, locks  # noqa: E402
from unidesk_tui.model import JOB_TERMINAL  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SID = "backend-core"
MAIN = "main-server"
SLOW_MARK = "sleep 47"  # the slow commit's RUN step, unique to this module


def running(lab: dict, sid: str = SID) -> str | None:
    """The commit of the image the service's running container runs; None when none runs."""
    try:
        return running_commit(lab, sid)
    except AssertionError:
        return None


def last_container_commit(lab: dict) -> str:
    """The commit label of the image of the service's newest container, running or not."""
    fmt = '{{index .Config.Labels "unidesk.ai/source-commit"}}'
    cid = (
        ssh(lab, MAIN, ["docker", "ps", "-aq", "--latest", "--filter", f"label=com.docker.compose.service={SID}"])
        .stdout.decode()
        .strip()
    )
    image = ssh(lab, MAIN, ["docker", "inspect", "--format", "{{.Image}}", cid]).stdout.decode().strip()
    return ssh(lab, MAIN, ["docker", "image", "inspect", "--format", fmt, image]).stdout.decode().strip()


def health(lab: dict, sid: str = SID) -> dict:
    with urllib.request.urlopen(f"{lab['msproxyUrl']}/api/microservices/{sid}/health", timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def branches(lab, tmp_path_factory) -> dict[str, str]:
    """Commits on test branches of sample-service: name -> full SHA."""
    work = clone_sample(lab, tmp_path_factory.mktemp("sample"))
    variants = {
        # A container that prints one line and exits 3 at start.
        "crash": (
            "app/entrypoint.sh",
            lambda t: t.replace("set -e\n", 'set -e\necho "safe-test: refusing to start"\nexit 3\n', 1),
        ),
        # A fresh ENV value per session keeps the slow step out of any earlier build cache.
        "slow": (
            "Dockerfile",
            lambda t: (
                t + f'ENV TEST_NONCE={secrets.token_hex(8)}\nRUN ["/bin/busybox", "{SLOW_MARK.split()[0]}", '
                f'"{SLOW_MARK.split()[1]}"]\n'
            ),
        ),
    }
    return {
        name: push_variant(work, f"test-safe-{name}", lab["content"]["new"], rel, edit, f"test: {name}")
        for name, (rel, edit) in variants.items()
    }


@pytest.fixture(scope="module", autouse=True)
def leave_old(lab, tmp_path_factory):
    """Leave backend-core running the seeded `old` commit for later modules."""
    yield
    if running(lab) != lab["content"]["old"]:
        tmp = tmp_path_factory.mktemp("leave-old")
        apply(
            lab,
            tmp / "state",
            write_manifest(tmp / "old.json", lab["content"]["sampleRepo"], {SID: lab["content"]["old"]}),
            "--wait",
        )


@pytest.fixture
def at_old(lab, tmp_path):
    """backend-core runs the seeded `old` commit before the test (and is left that way)."""
    old = lab["content"]["old"]
    if running(lab) != old:
        rc, doc = apply(
            lab,
            tmp_path / "setup-state",
            write_manifest(tmp_path / "setup.json", lab["content"]["sampleRepo"], {SID: old}),
            "--wait",
        )
        assert rc == 0, doc
    return old


def test_cancel_mid_build_stops_the_remote_build_frees_the_lock_and_keeps_the_old_version(
    lab, tmp_path, branches, at_old
):
    """Also `job prune --keep 3` while that job runs: the 3 newest finished jobs stay, and the running one."""
    state = tmp_path / "state"
    finished = []
    for _ in range(4):
        rc, doc = apply(
            lab,
            state,
            write_manifest(tmp_path / "dry.json", lab["content"]["sampleRepo"], {SID: lab["content"]["new"]}),
            "--dry-run",
            "--wait",
        )
        assert rc == 0 and doc["status"] == "succeeded", doc
        finished.append(doc["jobId"])
    rc, doc = apply(
        lab, state, write_manifest(tmp_path / "slow.json", lab["content"]["sampleRepo"], {SID: branches["slow"]})
    )
    assert rc == 0 and doc["ok"], doc
    job_id = doc["jobId"]
    wait_for(lambda: processes(SLOW_MARK), "the slow RUN step to run on the target", 180)

    rc, pruned = cli(lab, state, "job", "prune", "--keep", "3")
    assert rc == 0 and pruned["removed"] == finished[:1], pruned
    assert pruned["kept"] == [job_id, *finished[:0:-1]]
    rc, listed = cli(lab, state, "job", "list")
    assert [j["id"] for j in listed["jobs"]] == [job_id, *finished[:0:-1]]

    started = time.monotonic()
    rc, out = cli(lab, state, "job", "cancel", job_id)
    took = time.monotonic() - started
    assert rc == 0 and out["job"]["status"] == "cancelled", out
    assert took < 10, f"cancel took {took:.1f} s"
    build = next(s for s in out["job"]["steps"] if s["name"] == "build")
    assert build["status"] == "cancelled" and build["code"] == "cancelled"
    assert [e["code"] for e in out["job"]["result"]["errors"]] == ["cancelled"]
    assert f"{SID} step build" in out["job"]["result"]["errors"][0]["message"]
    # nothing of the build is left on the target: neither the RUN step nor the docker client
    wait_for(
        lambda: not processes(SLOW_MARK) and not processes("docker build .*-t unidesk-backend-core:main"),
        "the remote build to be gone",
        5,
    )
    assert locks.read_lock(state, "file", SID) is None
    assert running(lab) == at_old
    body = health(lab)
    assert body["status"] == "ok" and body["deploy"]["commit"] == at_old
    # cancelling it again is a coded error
    rc, again = cli(lab, state, "job", "cancel", job_id)
    assert rc == 1 and [e["code"] for e in again["errors"]] == ["job_finished"]
    assert jobs.load_job(state, job_id).status == "cancelled"


def _start_apply(lab, state: Path, manifest: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cli_argv(lab, state, "deploy", "apply", "--file", str(manifest)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _locked_errors(state: Path, doc: dict) -> list[dict]:
    """The `locked` refusal of an apply: in its document, or (a job refused by its worker) in its job."""
    if not doc.get("ok"):
        return [e for e in doc["errors"] if e["code"] == "locked"]

    def decided():
        record = jobs.load_job(state, doc["jobId"])
        texts = [e.text for e in jobs.read_events(state, doc["jobId"])[0]]
        return (record.status in JOB_TERMINAL or any(t.startswith("target locks held") for t in texts)) and record

    record = wait_for(decided, "the job to hold its target locks or end", 60)
    return [e.model_dump() for e in record.result.errors if e.code == "locked"] if record.result else []


def test_two_controllers_at_once_give_one_job_and_one_locked(lab, tmp_path, branches, at_old):
    """Two state directories (two controllers' locks that cannot see each other) apply one service at once."""
    manifest = write_manifest(tmp_path / "slow.json", lab["content"]["sampleRepo"], {SID: branches["slow"]})
    states = [tmp_path / "state-a", tmp_path / "state-b"]
    procs = [_start_apply(lab, state, manifest) for state in states]
    docs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    refused = [(_locked_errors(state, doc), state, doc) for state, doc in zip(states, docs, strict=True)]
    locked = [r for r in refused if r[0]]
    ran = [r for r in refused if not r[0]]
    assert len(locked) == 1 and len(ran) == 1, docs
    (errors, locked_state, locked_doc), (_, state, doc) = locked[0], ran[0]
    # refused before its job was recorded: one job in all
    try:
        root = jobs.jobs_root(locked_state)
        assert not locked_doc["ok"] and locked_doc["jobId"] is None and not (root.exists() and os.listdir(root)), (
            locked_doc
        )
    except AssertionError:
        jobs.cancel(state, doc["jobId"], wait=20)  # leave no job holding the locks for later tests
        raise
    assert doc["jobId"] in errors[0]["message"] and jobs.HOST in errors[0]["message"], errors
    assert "on target main-server" in errors[0]["message"]
    wait_for(lambda: processes(SLOW_MARK), "the one job's build", 180)
    rc, out = cli(lab, state, "job", "cancel", doc["jobId"])
    assert rc == 0 and out["job"]["status"] == "cancelled"
    assert running(lab) == at_old


async def _target_lock(lab, job_id: str, pid: int):
    from unidesk_tui.catalog import load_catalog
    from unidesk_tui.target_locks import acquire
    from unidesk_tui.targets import TargetPool

    pool = TargetPool(load_catalog(lab["config"]))
    try:
        held = await acquire(pool, "file", {SID: "main-server"}, "/tmp/other-controller", pid, job_id)
    except BaseException:
        await pool.close()
        raise
    return pool, held


async def test_a_dead_holders_target_lock_is_taken_over_and_logged(lab):
    import asyncio

    from unidesk_tui.errors import UnideskError

    gone = subprocess.Popen(["true"])
    gone.wait()
    # A lock whose remote holder lingers (a half-open connection) while its worker is dead.
    pool1, first = await _target_lock(lab, "20261202T000000Z-00dead", gone.pid)
    pool2, _alive = None, None
    try:
        pool2, second = await _target_lock(lab, "20261202T000000Z-0a11fe", os.getpid())
        assert len(second.takeovers) == 1 and "20261202T000000Z-00dead" in second.takeovers[0]
        assert f"pid {gone.pid}" in second.takeovers[0] and "is gone" in second.takeovers[0]
        # a live holder is not taken over: `locked`, naming it
        with pytest.raises(UnideskError) as err:
            await _target_lock(lab, "20261202T000000Z-0b0b0b", os.getpid())
        assert err.value.problems[0].code == "locked" and "20261202T000000Z-0a11fe" in err.value.problems[0].message
        await second.release()
        pool3, third = await _target_lock(lab, "20261202T000000Z-0c0c0c", os.getpid())  # released: free again
        assert third.takeovers == []
        await third.release()
        await pool3.close()
    finally:
        await first.release()
        await pool1.close()
        if pool2 is not None:
            await pool2.close()
        await asyncio.sleep(0)


def test_a_plan_whose_live_state_moved_is_stale_and_runs_nothing(lab, tmp_path, at_old):
    content = lab["content"]
    state = tmp_path / "state"
    manifest = write_manifest(tmp_path / "deploy.json", content["sampleRepo"], {SID: content["new"]})
    plan_file = tmp_path / "reviewed.plan.json"
    rc, planned = cli(lab, state, "deploy", "plan", "--file", str(manifest), "--out", str(plan_file))
    assert rc == 3 and planned["planFile"] == str(plan_file) and len(planned["digest"]) == 64, planned
    assert planned["services"][0]["action"] == "deploy" and planned["services"][0]["live"]["commit"] == at_old

    # someone else changes the live state: another commit goes out
    other = content["prod"]
    rc, doc = apply(
        lab,
        tmp_path / "other-state",
        write_manifest(tmp_path / "other.json", content["sampleRepo"], {SID: other}),
        "--wait",
    )
    assert rc == 0 and running(lab) == other, doc

    rc, doc = cli(lab, state, "deploy", "apply", "--plan", str(plan_file), "--wait")
    assert rc == 1 and not doc["ok"] and doc["jobId"] is None, doc
    assert {e["code"] for e in doc["errors"]} == {"plan_stale"}
    moved = {e["path"]: e["message"] for e in doc["errors"]}
    assert (
        f"{SID}: live.commit was {at_old[:12]} when planned, now {other[:12]}" == moved[f"services.{SID}.live.commit"]
    )
    assert not jobs.jobs_root(state).exists() or not os.listdir(jobs.jobs_root(state))  # nothing ran
    assert running(lab) == other


def test_going_back_to_a_built_commit_reuses_its_image_no_fetch_no_build(lab, tmp_path, at_old):
    content = lab["content"]
    state = tmp_path / "state"
    a, b = content["old"], content["new"]
    manifest = lambda commit: write_manifest(tmp_path / f"{commit[:8]}.json", content["sampleRepo"], {SID: commit})  # noqa: E731
    rc, first = apply(lab, state, manifest(a), "--force", "--wait")  # the reconciler builds and records A
    assert rc == 0 and next(s for s in first["job"]["steps"] if s["name"] == "build")["status"] == "succeeded", first
    rc, doc = apply(lab, state, manifest(b), "--wait")  # B over A
    assert rc == 0 and running(lab) == b, doc
    rc, back = apply(lab, state, manifest(a), "--wait")  # A again: a rollout only
    assert rc == 0 and back["status"] == "succeeded", json.dumps(back)[:3000]
    st = {s["name"]: s for s in back["job"]["steps"]}
    assert (
        st["build"]["status"] == "skipped"
        and st["source"]["status"] == "skipped"
        and "reusing" in st["build"]["message"]
    )
    texts = [e.text for e in jobs.read_events(state, back["jobId"])[0]]
    image_id = next(t for t in texts if t.startswith("target_build=")).split(" ", 1)[1]
    assert image_id.startswith("sha256:") and not any(t.startswith("target_build_command=") for t in texts)
    assert running(lab) == a and health(lab)["deploy"]["commit"] == a  # (--force rebuilds: the first apply above)


def test_a_container_that_exits_at_start_is_restored_to_the_previous_commit(lab, tmp_path, branches, at_old):
    def short_verify(cfg: dict) -> None:  # the crash shows within seconds; no need to wait a minute
        next(ms for ms in cfg["microservices"] if ms["id"] == SID)["timeouts"] = {"verify": 15}

    ws = workspace_with(lab, tmp_path, short_verify)
    state = tmp_path / "state"
    manifest = write_manifest(tmp_path / "crash.json", lab["content"]["sampleRepo"], {SID: branches["crash"]})
    rc, doc = apply(lab, state, manifest, "--wait", workspace=ws)
    assert rc == 1 and doc["status"] == "failed", json.dumps(doc)[:3000]
    result = doc["job"]["result"]
    assert result["restored"] == {"service": SID, "commit": at_old, "verified": True, "message": None}, result
    assert [e["code"] for e in result["errors"]] in (["verification_failed"], ["rollout_failed"])
    st = {s["name"]: s["status"] for s in doc["job"]["steps"]}
    assert st["restore"] == "succeeded" and st["restore-verify"] == "succeeded"
    assert running(lab) == at_old
    body = health(lab)
    assert body["status"] == "ok" and body["deploy"]["commit"] == at_old

    # --no-restore leaves the failed version for debugging
    rc, doc = apply(lab, state, manifest, "--wait", "--no-restore", workspace=ws)
    assert rc == 1 and doc["job"]["noRestore"] and doc["job"]["result"]["restored"] is None
    assert running(lab) is None and last_container_commit(lab) == branches["crash"]


# ---- k3s: the same restore for a Deployment in the node's native k3s ---------------------------

K3S = "decision-center"
D601 = "D601"


def deployment(lab: dict, sid: str = K3S) -> dict:
    """The service's (first) Deployment as D601's API server has it; {} when there is none."""
    ms = service(lab, sid)
    ns, name = ms["k8s"]["namespace"], ms["k8s"]["deployments"][0]
    found = kube_request(lab, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    return {} if found.get("kind") == "Status" else found


def deployed_commit(dep: dict) -> str | None:
    """The commit stamped on the Deployment's pod template (None: no Deployment, or unstamped)."""
    template = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return (template.get("annotations") or {}).get("UNIDESK_DEPLOY_COMMIT")


def containerd_id(lab: dict, image: str) -> str:
    """The config digest (image ID) containerd holds under `image` on D601, read with ctr there."""
    from executors.containerd import listed_digest
    from unidesk_tui.identifiers import normalize_image

    node = next(t for t in json.loads(Path(lab["config"]).read_text())["targets"] if t["id"] == D601)["k3s"]
    ctr = ["ctr", "-a", node["containerdSocket"], "-n", node["containerdNamespace"]]
    digest = listed_digest(ssh(lab, D601, [*ctr, "images", "ls"]).stdout.decode(), normalize_image(image))
    assert digest, f"{image} not in containerd"
    manifest = json.loads(ssh(lab, D601, [*ctr, "content", "get", digest]).stdout)
    return manifest["config"]["digest"]


@pytest.fixture
def k3s_good(lab, tmp_path) -> str:
    """decision-center runs a good commit, rolled out (the seeded one, else `new`); its commit."""
    dep = deployment(lab)
    status = dep.get("status") or {}
    rolled_out = status.get("observedGeneration") == (dep.get("metadata") or {}).get("generation")
    if deployed_commit(dep) and status.get("availableReplicas") and rolled_out:
        return deployed_commit(dep)
    new = lab["content"]["new"]
    manifest = write_manifest(tmp_path / "good.json", lab["content"]["sampleRepo"], {K3S: new})
    rc, doc = apply(lab, tmp_path / "setup-state", manifest, "--wait")
    assert rc == 0, json.dumps(doc)[:3000]
    return new


def test_k3s_commit_that_exits_at_start_is_restored_to_the_previous_deployment(lab, tmp_path, branches, k3s_good):
    """Issue 12: a k3s rollout that crashes puts back the recorded Deployment and the previous image
    in containerd, and verifies the previous commit; --no-restore leaves the failed version."""
    before = deployment(lab)
    image = before["spec"]["template"]["spec"]["containers"][0]["image"]
    previous_id = containerd_id(lab, image)
    state = tmp_path / "state"
    manifest = write_manifest(tmp_path / "crash.json", lab["content"]["sampleRepo"], {K3S: branches["crash"]})
    started = time.monotonic()
    rc, doc = apply(lab, state, manifest, "--wait")
    assert rc == 1 and doc["status"] == "failed", json.dumps(doc)[:3000]
    result = doc["job"]["result"]
    assert [(e["code"], e["service"]) for e in result["errors"]] == [("rollout_failed", K3S)], result
    assert result["restored"] == {"service": K3S, "commit": k3s_good, "verified": True, "message": None}, result
    st = {s["name"]: s for s in doc["job"]["steps"]}
    assert st["k8s-rollout"]["status"] == "failed" and "exit code 3" in st["k8s-rollout"]["message"]
    assert [st[n]["status"] for n in ("restore", "restore-rollout", "restore-verify")] == ["succeeded"] * 3, st
    restore_ms = sum(st[n]["durationMs"] for n in ("restore", "restore-rollout", "restore-verify"))
    print(f"k3s restore: {restore_ms} ms (restore steps), job {time.monotonic() - started:.1f} s")
    texts = [e.text for e in jobs.read_events(state, doc["jobId"])[0]]
    # recorded before anything changed; put back by a retag of the kept image and a re-apply
    assert any(t.startswith(f"restore_point={k3s_good} image {previous_id} ") for t in texts), texts
    assert any(t.startswith("restore_image=retagged ") for t in texts), texts
    after = deployment(lab)
    applied = f"restore_applied=Deployment {after['metadata']['namespace']}/{after['metadata']['name']} "
    assert any(t.startswith(applied) for t in texts), texts
    assert deployed_commit(after) == k3s_good
    assert after["spec"]["template"] == before["spec"]["template"]  # image, annotations, env: as before
    assert containerd_id(lab, image) == previous_id  # the image name points at the previous image again
    body = health(lab, K3S)
    assert body["status"] == "ok" and body["deploy"]["commit"] == k3s_good, body

    # --no-restore leaves the failed version (its build is reused: no second build)
    rc, doc = apply(lab, state, manifest, "--wait", "--no-restore")
    assert rc == 1 and doc["job"]["noRestore"] and doc["job"]["result"]["restored"] is None, json.dumps(doc)[:3000]
    assert [e["code"] for e in doc["job"]["result"]["errors"]] == ["rollout_failed"]
    assert "restore" not in {s["name"] for s in doc["job"]["steps"]}
    assert any("restore skipped (--no-restore)" in e.text for e in jobs.read_events(state, doc["jobId"])[0])
    assert deployed_commit(deployment(lab)) == branches["crash"]
    assert containerd_id(lab, image) != previous_id

    # and a later apply of the good commit brings it back (a rollout of its recorded build)
    good = write_manifest(tmp_path / "good.json", lab["content"]["sampleRepo"], {K3S: k3s_good})
    rc, doc = apply(lab, state, good, "--wait")
    assert rc == 0, json.dumps(doc)[:3000]
    assert deployed_commit(deployment(lab)) == k3s_good and health(lab, K3S)["deploy"]["commit"] == k3s_good
