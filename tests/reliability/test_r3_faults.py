"""R3: faults on real lab hosts (issue 13). Each fault ends the job `failed` with its own error code
at the step where it struck, never `internal_error`; the services on the other hosts keep their
containers and stay healthy, and a `deploy check --live` of another host's service reads fine while
the fault is on. Where a restore applies, the previous version keeps serving.

Faults: the job's sshd frozen (SIGSTOP) mid-build, the provider's egress proxy down, a commit whose
Dockerfile fails, a service whose health keeps reporting the old commit, the dev microservice proxy
down. The workspace gives every service short step limits (TIMEOUTS) so each fault is detected
within seconds through the product's own limits; the time each took is printed, never asserted.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.lab.helpers_live import (
    cli,
    clone_sample,
    compose_container,
    config,
    job_status,
    kube_request,
    processes,
    push_variant,
    running_commit,
    service,
    ssh,
    texts,
    write_manifest,
)
from unidesk_tui import jobs

pytestmark = [pytest.mark.lab, pytest.mark.slow]

MAIN, D601, D518 = "main-server", "D601", "D518"
TIMEOUTS = {"build": 15, "rollout": 30, "verify": 8}  # seconds; the lab's real builds take 1-3 s
FAULTS = ["egress_proxy_down", "build_failure", "old_commit_health", "sshd_frozen", "dev_proxy_down"]
FIGURES: dict[str, str] = {}  # fault -> "code at step, N s after ..." (published by the last test)


@dataclass
class World:
    lab: dict
    ws: Path  # a copy of the lab workspace (git clone included) whose config.json has TIMEOUTS
    state: Path
    tmp: Path
    commits: dict[str, str]  # test commits on branches r3-<name> of sample-service

    def manifest(self, name: str, commits: dict[str, str]) -> Path:
        return write_manifest(self.tmp / f"{name}.json", self.lab["content"]["sampleRepo"], commits)

    def cli(self, *args: str) -> tuple[int, dict]:
        return cli(self.lab, self.state, *args, workspace=self.ws)


@pytest.fixture(scope="module")
def world(lab, tmp_path_factory) -> World:
    tmp = tmp_path_factory.mktemp("r3")
    ws = tmp / "workspace"
    shutil.copytree(lab["workspace"], ws, symlinks=True)
    cfg = json.loads((ws / "config.json").read_text())
    for ms in cfg["microservices"]:
        ms["timeouts"] = dict(TIMEOUTS)
    (ws / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    work = clone_sample(lab, tmp / "sample")
    new, old = lab["content"]["new"], lab["content"]["old"]
    variants = {
        "broken": ("Dockerfile", lambda t: t + 'RUN ["/bin/busybox", "false"]\n'),
        # a fresh value per session keeps the slow step out of any earlier build cache
        "slow": (
            "Dockerfile",
            lambda t: t + f'ENV R3_NONCE={secrets.token_hex(8)}\nRUN ["/bin/busybox", "sleep", "40"]\n',
        ),
        "stale-health": ("app/www/cgi-bin/health", lambda t: t.replace('"${UNIDESK_DEPLOY_COMMIT}"', f'"{old}"')),
    }
    commits = {
        name: push_variant(work, f"r3-{name}", new, rel, edit, f"r3: {name}") for name, (rel, edit) in variants.items()
    }
    return World(lab, ws, tmp / "state", tmp, commits)


# -- what the other hosts run ------------------------------------------------------------------


def containers(lab: dict, host: str) -> dict[str, tuple[str, str]]:
    """Running containers of a host: name -> (container id, image id), read with the docker CLI."""
    ids = ssh(lab, host, ["docker", "ps", "-q", "--no-trunc"]).stdout.decode().split()
    if not ids:
        return {}
    rows = (
        ssh(lab, host, ["docker", "inspect", "--format", "{{.Name}} {{.Id}} {{.Image}}", *ids])
        .stdout.decode()
        .splitlines()
    )
    return {name: (cid, image) for name, cid, image in (row.split() for row in rows)}


def deployments(lab: dict) -> dict[str, object]:
    """Every Deployment on D601's API server: (namespace/name) -> (annotations, spec)."""
    items = kube_request(lab, "GET", "/apis/apps/v1/deployments")["items"]
    return {
        f"{d['metadata']['namespace']}/{d['metadata']['name']}": (d["metadata"].get("annotations"), d["spec"])
        for d in items
    }


def others(lab: dict, host: str) -> dict[str, object]:
    """What must not change on the hosts other than `host`: their containers (ids and images), the
    health of their compose services (read on each service's own port), and the k3s Deployments
    unless the fault is on D601."""
    out: dict[str, object] = {h: containers(lab, h) for h in (MAIN, D601, D518) if h != host}
    served = [
        m["id"]
        for m in config(lab)["microservices"]
        if m["deployment"]["mode"] != "k3sctl-managed" and m.get("health") and m["deployment"]["target"] != host
    ]
    out["health"] = {sid: (body["status"], body["deploy"]["commit"]) for sid in served for body in [health(lab, sid)]}
    if host != D601:
        out["kube"] = deployments(lab)
    return out


def health(lab: dict, sid: str) -> dict:
    """The service's own health endpoint, read directly on its host's address (through no proxy)."""
    import urllib.request

    ms = service(lab, sid)
    url = f"http://{lab['addresses'][ms['deployment']['target']]}:{ms['health']['port']}{ms['health']['path']}"
    with urllib.request.urlopen(url, timeout=10) as resp:  # the lab's hosts are routed from here
        return json.loads(resp.read())


def check_reads_fine(world: World, sid: str) -> dict:
    """`deploy check --live` of one service (another host's) reads it: no error, no probe failure,
    healthy, and the commit its container runs."""
    lab = world.lab
    commit = running_commit(lab, sid)
    rc, doc = cli(
        lab,
        world.tmp / "check-state",
        "deploy",
        "check",
        "--live",
        "--file",
        str(world.manifest(f"check-{sid}", {sid: commit})),
        workspace=world.ws,
    )
    live = doc["services"][0]["live"]
    assert doc["errors"] == [], doc
    assert live["state"] not in ("unreachable", "runtime-unreachable", "error"), live
    assert (live["health"], live["commit"]) == ("healthy", commit), live
    return live


def container_of(lab: dict, sid: str) -> str:
    ms = service(lab, sid)
    return compose_container(lab, ms["deployment"]["target"], ms["compose"]["project"], ms["compose"]["service"])


# -- jobs --------------------------------------------------------------------------------------


def start(world: World, *args: str) -> str:
    rc, doc = world.cli("deploy", "apply", *args)
    assert rc == 0 and doc["jobId"], doc
    return doc["jobId"]


def step_running(world: World, job_id: str, sid: str, name: str) -> bool:
    return any(
        s.service == sid and s.name == name and s.status == "running" for s in jobs.load_job(world.state, job_id).steps
    )


def ended(world: World, job_id: str, within: float = 180) -> tuple[dict, float]:
    """The job's `job status` document once it ended, and when it ended (time.monotonic())."""
    wait_for(
        lambda: jobs.load_job(world.state, job_id).status not in ("queued", "running"),
        f"job {job_id} to end",
        within,
        0.1,
    )
    at = time.monotonic()
    return job_status(world.lab, world.state, job_id, workspace=world.ws), at


class Meanwhile:
    """Run `deploy check --live` of another host's service in a thread while the fault is on."""

    def __init__(self, world: World, sid: str) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(world, sid))
        self.thread.start()

    def _run(self, world: World, sid: str) -> None:
        try:
            check_reads_fine(world, sid)
        except BaseException as exc:  # re-raised in the test by done()
            self.error = exc

    def done(self) -> None:
        self.thread.join(120)
        assert not self.thread.is_alive(), "deploy check --live did not end"
        if self.error is not None:
            raise self.error


def assert_failed_at(world: World, doc: dict, sid: str, step: str, code: str) -> dict:
    """The job failed with `code` at `step` (job.json and the result agree), and nothing says
    internal_error or Traceback: not a step, not the result, not the log, not the worker's stderr."""
    job = doc["job"]
    assert job["status"] == "failed", job
    failed = [s for s in job["steps"] if s["status"] == "failed"]
    assert [(s["service"], s["name"], s["code"]) for s in failed][:1] == [(sid, step, code)], failed
    assert [(e["code"], e["service"]) for e in job["result"]["errors"]] == [(code, sid)], job["result"]
    assert job["result"]["services"][sid] == "failed"
    codes = {s["code"] for s in job["steps"]} | {e["code"] for e in job["result"]["errors"]}
    assert "internal_error" not in codes, job
    assert not any("Traceback" in text or "internal_error" in text for text in texts(doc["log"]["events"]))
    stderr = world.state / "jobs" / job["id"] / "worker.stderr"
    assert not stderr.exists() or "Traceback" not in stderr.read_text(), stderr.read_text()
    return next(s for s in job["steps"] if s["status"] == "failed")


def record(fault: str, failed_step: dict, seconds: float, since: str = "the apply") -> None:
    """The figure: the failed step's code and name, and the time from `since` to the job's end."""
    FIGURES[fault] = f"{failed_step['code']} at {failed_step['name']}, job failed {seconds:.1f} s after {since}"


# -- the faults --------------------------------------------------------------------------------


def test_egress_proxy_down_fails_at_the_probe(world):
    from unidesk_lab import lab as labapi

    lab, sid = world.lab, "d518-worker"
    before_cid, before_commit, unaffected = container_of(lab, sid), running_commit(lab, sid), others(lab, D518)
    labapi.stop_egress(lab["dir"], D518)
    try:
        t0 = time.monotonic()
        job = start(world, "--file", str(world.manifest("egress", {sid: world.commits["slow"]})))
        meanwhile = Meanwhile(world, "backend-core")  # another host, while D518 has no egress
        doc, t1 = ended(world, job)
        meanwhile.done()
        took = t1 - t0
    finally:
        labapi.start_egress(lab["dir"], D518)
    failed = assert_failed_at(world, doc, sid, "proxy-probe", "proxy_probe_failed")
    assert all(
        s["status"] == "skipped" for s in doc["job"]["steps"] if s["name"] in ("source", "build", "rollout", "verify")
    )
    assert (container_of(lab, sid), running_commit(lab, sid)) == (
        before_cid,
        before_commit,
    )  # the old version keeps serving
    assert health(lab, sid)["deploy"]["commit"] == before_commit
    assert others(lab, D518) == unaffected
    record("egress_proxy_down", failed, took)


def test_build_failure_fails_at_build_and_keeps_the_running_version(world):
    lab, sid = world.lab, "backend-core"
    before_cid, before_commit, unaffected = container_of(lab, sid), running_commit(lab, sid), others(lab, MAIN)
    t0 = time.monotonic()
    job = start(world, "--file", str(world.manifest("broken", {sid: world.commits["broken"]})), "--force")
    meanwhile = Meanwhile(world, "d518-worker")
    doc, t1 = ended(world, job)
    meanwhile.done()
    took = t1 - t0
    failed = assert_failed_at(world, doc, sid, "build", "build_failed")
    assert "false" in failed["message"] or any("false" in t for t in texts(doc["log"]["events"], sid, "build"))
    assert all(s["status"] == "skipped" for s in doc["job"]["steps"] if s["name"] in ("rollout", "verify"))
    assert (container_of(lab, sid), running_commit(lab, sid)) == (before_cid, before_commit)
    assert health(lab, sid)["deploy"]["commit"] == before_commit
    assert others(lab, MAIN) == unaffected
    record("build_failure", failed, took)


def test_old_commit_health_fails_verification_and_the_previous_version_is_restored(world):
    lab, sid = world.lab, "backend-core"
    before_commit, unaffected = running_commit(lab, sid), others(lab, MAIN)
    t0 = time.monotonic()
    job = start(world, "--file", str(world.manifest("stale", {sid: world.commits["stale-health"]})))
    meanwhile = Meanwhile(world, "d518-worker")
    doc, t1 = ended(world, job)
    meanwhile.done()
    took = t1 - t0
    failed = assert_failed_at(world, doc, sid, "verify", "verification_failed")
    steps = {s["name"]: s for s in doc["job"]["steps"] if s["service"] == sid}
    assert steps["rollout"]["status"] == "succeeded"
    assert f"health deploy.commit is {lab['content']['old']}" in failed["message"]
    # restore applies to compose: the version that ran before the job is back, verified, and serving
    restored = doc["job"]["result"]["restored"]
    assert restored and (restored["commit"], restored["verified"]) == (before_commit, True), restored
    assert running_commit(lab, sid) == before_commit and health(lab, sid)["deploy"]["commit"] == before_commit
    assert others(lab, MAIN) == unaffected
    record("old_commit_health", failed, took)


def build_client(lab: dict) -> int | None:
    """The `docker build` client of d518-worker's image on D518 (the lab's hosts share our pid namespace)."""
    image = service(lab, "d518-worker")["build"]["image"]
    found = processes(f"docker (buildx )?build .*-t {image}")
    return int(found[0].split()[0]) if found else None


def session_sshd(lab: dict, pid: int) -> list[int]:
    """The sshd processes serving the SSH connection `pid` runs under (not the listener), checked to
    be D518's sshd."""
    chain: list[tuple[int, str]] = []
    while pid > 1:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        chain.append((pid, cmdline))
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    listener = next(c for p, c in chain if c.startswith("sshd: ") and "[listener]" in c or "sshd -D" in c)
    assert f"/hosts/{D518}/" in listener, chain
    sessions = [p for p, c in chain if c.startswith("sshd: ") and "[listener]" not in c and "sshd -D" not in c]
    assert sessions, chain
    return sessions


def test_sshd_frozen_mid_build_fails_the_job_at_build_within_its_limit(world):
    lab, sid = world.lab, "d518-worker"
    before_cid, before_commit, unaffected = container_of(lab, sid), running_commit(lab, sid), others(lab, D518)
    job = start(world, "--file", str(world.manifest("slow", {sid: world.commits["slow"]})))
    wait_for(
        lambda: step_running(world, job, sid, "build") and build_client(lab), "the slow build to run on D518", 120, 0.2
    )
    frozen = session_sshd(lab, build_client(lab))
    try:
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        meanwhile = Meanwhile(world, "backend-core")  # another host, while D518's session is frozen
        doc, t1 = ended(world, job, 300)
        meanwhile.done()
        took = t1 - t0
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    failed = assert_failed_at(world, doc, sid, "build", "target_unreachable")
    # detected through the build's own limit, not by the SSH keepalive giving up much later
    assert f"exceeded its limit of {TIMEOUTS['build']} s" in failed["message"], failed
    assert all(s["status"] == "skipped" for s in doc["job"]["steps"] if s["name"] in ("rollout", "verify"))
    # once the sshd runs again the channel's close reaches it: the build is killed, nothing was replaced
    wait_for(lambda: build_client(lab) is None, "the frozen job's build to be killed", 60)
    assert (container_of(lab, sid), running_commit(lab, sid)) == (before_cid, before_commit)
    assert health(lab, sid)["deploy"]["commit"] == before_commit
    assert others(lab, D518) == unaffected
    record("sshd_frozen", failed, took, "the freeze")
    # the context the frozen job could not remove (the next apply of the pair would: job liveness)
    for text in texts(doc["log"]["events"], sid, "source"):
        if text.startswith("target_build_context="):
            ssh(lab, D518, ["rm", "-rf", "--", text.split("=", 1)[1].split(" ", 1)[0]])


def test_dev_microservice_proxy_down_fails_verification(world):
    from unidesk_lab import lab as labapi

    lab, sid = world.lab, "backend-core"
    unaffected, dev_before = others(lab, D601), deployments(lab)
    labapi.stop_daemon(lab["dir"], MAIN, "msproxy-dev")
    try:
        t0 = time.monotonic()
        job = start(world, "--env", "dev", "--service", sid, "--force")
        meanwhile = Meanwhile(world, "d518-worker")  # file mode reads health through the main proxy: fine
        doc, t1 = ended(world, job)
        meanwhile.done()
        took = t1 - t0
    finally:
        labapi.start_daemon(lab["dir"], MAIN, "msproxy-dev")
    failed = assert_failed_at(world, doc, sid, "verify", "verification_failed")
    assert lab["layout"].dev_msproxy_url.split("//", 1)[1] in failed["message"], (
        failed
    )  # names the proxy it could not read
    assert others(lab, D601) == unaffected
    dev = service(lab, sid)["environments"]["dev"]["k8s"]
    applied = {f"{dev['namespace']}/{name}" for name in dev["deployments"]}  # the only objects the job may change
    assert {k: v for k, v in deployments(lab).items() if k not in applied} == {
        k: v for k, v in dev_before.items() if k not in applied
    }
    record("dev_proxy_down", failed, took)


def test_r3_figures(figures):
    missing = [f for f in FAULTS if f not in FIGURES]
    if len(missing) == len(FAULTS):
        pytest.skip("no fault of this suite ran")
    assert not missing, f"faults that did not pass: {missing}"
    limits = ", ".join(f"{k} {v} s" for k, v in TIMEOUTS.items())
    figures(
        "R3",
        "faults on lab hosts",
        {"step_limits": limits, **{f: FIGURES[f] for f in FAULTS}, "faults": len(FAULTS), "internal_error": 0},
    )
