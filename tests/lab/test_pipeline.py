"""The target-side pipeline end to end through the real job engine (`deploy apply --wait`).

Fetch, `git archive`, BuildKit build and compose rollout run on the lab hosts over SSH; providers
reach the git remote only through their egress proxy. Only the Kubernetes API is emulated, and
these tests do not use it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers_live import (  # noqa: E402
    apply_and_wait,
    cli,
    compose_up,
    deploy_stamps,
    host_snapshot,
    running_image_commit,
    service,
    service_steps,
    ssh,
    texts,
    workspace_with,
    write_manifest,
)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

MAIN, D518 = "main-server", "D518"
# What the deploy path must never touch on a host.
HOST_GLOBAL = [
    "/etc/docker/daemon.json",
    "/root/.docker/config.json",
    "/root/.profile",
    "/root/.bashrc",
    "/etc/profile",
    "/etc/environment",
]


def fingerprint(lab, host: str) -> dict[str, str]:
    """Hashes of host-global config files (absent ones as 'absent'), read on the host."""
    out = {}
    for path in HOST_GLOBAL:
        proc = ssh(lab, host, ["cat", "--", path], check=False)
        out[path] = hashlib.sha256(proc.stdout).hexdigest() if proc.returncode == 0 else "absent"
    return out


def contexts_left(lab, host: str) -> list[str]:
    work = json.loads(Path(lab["config"]).read_text())
    target = next(t for t in work["targets"] if t["id"] == host)
    proc = ssh(lab, host, ["ls", "-A", "--", f"{target['workDir']}/contexts"], check=False)
    return proc.stdout.decode().split()


def test_main_server_apply_builds_on_target_and_verifies(lab, state, tmp_path):
    repo, old, new = lab["content"]["sampleRepo"], lab["content"]["old"], lab["content"]["new"]
    current = running_image_commit(lab, MAIN, "unidesk", "backend-core")
    want = new if current != new else old
    manifest = write_manifest(tmp_path / "deploy.json", repo, {"backend-core": want[:10]})
    # --force: an earlier module may have built `want` already, which would be reused (no build)
    rc, doc, events = apply_and_wait(lab, state, manifest, "--service", "backend-core", "--force")
    assert rc == 0 and doc["job"]["status"] == "succeeded", doc
    assert [n for n, s in service_steps(doc, "backend-core").items() if s["status"] == "succeeded"] == [
        "resolve-compose",
        "proxy-probe",
        "reuse",
        "source",
        "build",
        "rollout",
        "verify",
    ]
    log = texts(events, "backend-core")
    assert "target_source_proxy=direct" in log and "target_build_proxy=direct" in log
    assert any(t.startswith("target_build_proxy_probe=skipped") for t in log)
    assert f"target_source_commit={want}" in log
    assert "target_build_cache_from=unidesk-backend-core:main" in log  # the seeded image is the cache source
    assert any(t.startswith("target_build_cache_to=") for t in log)
    assert any(t.startswith("verified: running " + want) for t in log)
    # the runtime proves it (read with the docker CLI, not our code) and check agrees
    assert running_image_commit(lab, MAIN, "unidesk", "backend-core") == want
    assert contexts_left(lab, MAIN) == []
    rc, check = cli(lab, state, "deploy", "check", "--file", str(manifest))
    item = check["services"][0]
    assert (rc, item["action"], item["live"]["state"], item["imagePresent"]) == (0, "noop", "in-sync", True), item


def test_provider_apply_goes_through_the_egress_proxy_only(lab, state, tmp_path):
    repo, old, new = lab["content"]["sampleRepo"], lab["content"]["old"], lab["content"]["new"]
    current = running_image_commit(lab, D518, "unidesk", "d518-worker")
    want = new if current != new else old
    egress_log = Path(lab["layout"].egress_log(D518))
    seen = egress_log.stat().st_size
    before = fingerprint(lab, D518)
    manifest = write_manifest(tmp_path / "deploy.json", repo, {"d518-worker": want})
    rc, doc, events = apply_and_wait(lab, state, manifest, "--force")  # --force: a commit built before would be reused
    assert rc == 0 and doc["job"]["status"] == "succeeded", doc
    log = texts(events, "d518-worker")
    channel = "provider-gateway-ws-egress:http://127.0.0.1:18789"
    assert f"target_source_proxy={channel}" in log and f"target_build_proxy={channel}" in log
    assert "target_build_proxy_probe=ok" in log
    build_cmd = next(t for t in log if t.startswith("target_build_command="))
    assert "--network host" in build_cmd and "--build-arg HTTPS_PROXY=http://127.0.0.1:18789" in build_cmd
    assert "unidesk.ai/source-commit=" + want in build_cmd
    # the fetch really went through D518's egress proxy (its own log), the only route to the remote
    fetched = [json.loads(line) for line in egress_log.read_text()[seen:].splitlines() if line.strip()]
    assert any("sample-service.git" in r["target"] and r["result"] == "ok" for r in fetched), fetched
    assert running_image_commit(lab, D518, "unidesk", "d518-worker") == want
    # nothing host-global changed, and no proxy variable outlived its command
    assert fingerprint(lab, D518) == before
    env_now = ssh(lab, D518, ["env"]).stdout.decode()
    assert "PROXY=" not in env_now.upper().replace("NO_PROXY=", "")
    assert contexts_left(lab, D518) == []


def test_failed_proxy_probe_fails_the_job_without_fallback(lab, state, tmp_path):
    from unidesk_lab import lab as labapi

    repo = lab["content"]["sampleRepo"]
    current = running_image_commit(lab, D518, "unidesk", "d518-worker")
    manifest = write_manifest(tmp_path / "deploy.json", repo, {"d518-worker": current})
    before = host_snapshot(lab, D518)
    labapi.stop_egress(lab["dir"], D518)
    try:
        rc, doc, events = apply_and_wait(lab, state, manifest, "--force")
    finally:
        labapi.start_egress(lab["dir"], D518)
    assert rc != 0 and doc["job"]["status"] == "failed", doc
    st = service_steps(doc, "d518-worker")
    assert st["proxy-probe"]["status"] == "failed" and st["proxy-probe"]["code"] == "proxy_probe_failed"
    assert all(st[n]["status"] != "succeeded" for n in ("source", "build", "rollout", "verify"))
    assert "target_build_proxy_probe=failed" in texts(events, "d518-worker")
    assert host_snapshot(lab, D518) == before  # nothing was built or replaced


def test_declared_build_base_image_is_used(lab, state, tmp_path):
    repo = lab["content"]["sampleRepo"]
    current = running_image_commit(lab, MAIN, "unidesk", "code-queue-mgr")
    image = service(lab, "code-queue-mgr")["build"]["image"]
    base = f"{image}-build-base"
    ssh(lab, MAIN, ["docker", "tag", image, base])
    try:
        manifest = write_manifest(tmp_path / "deploy.json", repo, {"code-queue-mgr": current})
        rc, doc, events = apply_and_wait(lab, state, manifest, "--force")
    finally:
        ssh(lab, MAIN, ["docker", "rmi", base], check=False)
    assert rc == 0 and doc["job"]["status"] == "succeeded", doc
    log = texts(events, "code-queue-mgr")
    assert f"target_build_base_image={base}" in log
    assert f"--build-arg SAMPLE_BASE_IMAGE={base}" in next(t for t in log if t.startswith("target_build_command="))
    # the sample Dockerfile records the base argument it got in a label of the image it built
    fmt = '{{index .Config.Labels "org.unidesk.sample.build-base"}}'
    assert ssh(lab, MAIN, ["docker", "image", "inspect", "--format", fmt, image]).stdout.decode().strip() == base


def test_healthy_old_version_fails_verification(lab, state, tmp_path):
    """A service whose process reports an old commit although image and env are stamped with the new
    one (the compose file's entrypoint pins it; the deploy-env override cannot reach a process's own
    env): the job must fail on health."""
    repo = lab["content"]["sampleRepo"]
    ms = service(lab, "backend-core")
    current = running_image_commit(lab, MAIN, "unidesk", "backend-core")
    want = next(c for c in lab["content"]["commits"] if c != current)
    compose_file = Path(ms["compose"]["file"])
    stale_file = compose_file.with_name("docker-compose.stale-test.yml")
    text = compose_file.read_text()
    pinned = f'  backend-core:\n    entrypoint: ["/bin/env", "UNIDESK_DEPLOY_COMMIT={current}", "/app/entrypoint.sh"]\n'
    assert "  backend-core:\n" in text
    stale_file.write_text(text.replace("  backend-core:\n", pinned, 1))

    def pin(cfg: dict) -> None:
        next(m for m in cfg["microservices"] if m["id"] == "backend-core")["compose"]["file"] = str(stale_file)

    ws = workspace_with(lab, tmp_path, pin)
    manifest = write_manifest(ws / "deploy.json", repo, {"backend-core": want})
    try:
        rc, doc, events = apply_and_wait(lab, state, manifest, workspace=ws)
    finally:
        compose_up(
            lab,
            MAIN,
            ms,
            deploy_stamps(repo, want),
        )
        stale_file.unlink(missing_ok=True)
    assert rc != 0 and doc["job"]["status"] == "failed", doc
    st = service_steps(doc, "backend-core")
    assert st["rollout"]["status"] == "succeeded"
    assert st["verify"]["status"] == "failed" and st["verify"]["code"] == "verification_failed"
    assert "health deploy.commit is " + current in st["verify"]["message"]
    assert any(e["code"] == "verification_failed" for e in doc["job"]["result"]["errors"])


def spec_of(obj: dict) -> tuple:
    """What an apply would change of an object (its status moves on its own)."""
    return obj.get("metadata", {}).get("annotations"), obj.get("spec")


def test_k3s_apply_builds_on_d601_imports_into_containerd_and_rolls_out(lab, state, tmp_path):
    from helpers_live import kube_request

    repo = lab["content"]["sampleRepo"]
    sid = "code-queue"  # its legacy direct-Docker twin is the spec's case (decision-center, k3s-only, has none)
    ms = service(lab, sid)
    ns, name = ms["k8s"]["namespace"], ms["k8s"]["deployments"][0]
    twin = ms["compose"]["service"]
    untouched = spec_of(kube_request(lab, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/decision-center"))
    live = kube_request(lab, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    current = (live.get("metadata", {}).get("annotations") or {}).get("UNIDESK_DEPLOY_COMMIT")
    want = (
        lab["content"]["new"] if current != lab["content"]["new"] else lab["content"]["old"]
    )  # both carry the k3s manifest
    manifest = write_manifest(tmp_path / "deploy.json", repo, {sid: want})
    # a legacy direct-Docker twin of the service (created, never started) must be gone afterwards
    ssh(lab, "D601", ["docker", "rm", "-f", twin], check=False)
    twin_image = service(lab, "d518-worker")["build"]["image"]
    if ssh(lab, "D601", ["docker", "image", "inspect", twin_image], check=False).returncode != 0:
        ssh(lab, "D601", ["docker", "load"], input=ssh(lab, D518, ["docker", "save", twin_image]).stdout)
    ssh(
        lab,
        "D601",
        [
            "docker",
            "create",
            "--name",
            twin,
            "--label",
            f"com.docker.compose.project={ms['compose']['project']}",
            "--label",
            f"com.docker.compose.service={twin}",
            twin_image,
        ],
    )
    rc, doc, events = apply_and_wait(lab, state, manifest, "--force")  # --force: a commit built before would be reused
    assert rc == 0 and doc["job"]["status"] == "succeeded", doc
    assert list(service_steps(doc, sid)) == [
        "k3s-preflight",
        "k3s-restore-point",
        "k3s-containerized",
        "proxy-probe",
        "k3s-pause-image",
        "source",
        "k8s-manifest",
        "reuse",
        "build",
        "k3s-import",
        "k8s-apply",
        "k8s-rollout",
        "legacy-twin",
        "verify",
    ]
    log = texts(events, sid)
    assert "target_build_proxy_probe=ok" in log and "k3s_containerized=none" in log
    assert any(t.startswith("k8s_manifest=" + ms["k8s"]["manifest"] + "@" + want[:12]) for t in log)
    assert any(t.startswith("k3s_image_imported=docker.io/library/" + ms["build"]["image"]) for t in log)
    assert any(t.startswith("k8s_rollout=complete") for t in log)
    assert any(t.startswith(f"legacy_docker_twin_removed={twin}") for t in log)
    assert ssh(lab, "D601", ["docker", "ps", "-aq", "--filter", f"name={twin}"]).stdout.strip() == b""
    # read back on D601 itself: the emulated API object and the real containerd image store
    dep = kube_request(lab, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    assert dep["metadata"]["annotations"]["UNIDESK_DEPLOY_COMMIT"] == want
    assert dep["metadata"]["annotations"]["UNIDESK_DEPLOY_REPO"] == repo
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == ms["build"]["image"]
    # narrowed: decision-center, in the same manifest, untouched
    assert spec_of(kube_request(lab, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/decision-center")) == untouched
    cfg = json.loads(Path(lab["config"]).read_text())
    node = next(t for t in cfg["targets"] if t["id"] == "D601")["k3s"]
    images = (
        ssh(
            lab,
            "D601",
            ["ctr", "-a", node["containerdSocket"], "-n", node["containerdNamespace"], "images", "ls", "-q"],
        )
        .stdout.decode()
        .split()
    )
    assert "docker.io/library/" + ms["build"]["image"] in images
    rc, check = cli(lab, state, "deploy", "check", "--file", str(manifest))
    item = check["services"][0]
    assert (rc, item["action"], item["live"]["state"], item["live"]["commit"]) == (0, "noop", "in-sync", want), item


def test_stale_build_contexts_of_killed_workers_are_pruned_fresh_ones_kept(lab, state, tmp_path):
    work = next(t for t in json.loads(Path(lab["config"]).read_text())["targets"] if t["id"] == MAIN)["workDir"]
    stale, fresh = (
        f"{work}/contexts/backend-core-deadbeef0000-00000001",
        f"{work}/contexts/backend-core-deadbeef0000-00000002",
    )
    ssh(lab, MAIN, ["mkdir", "-p", "--", stale, fresh])
    ssh(lab, MAIN, ["touch", "-d", "3 hours ago", "--", stale])
    try:
        repo, old, new = lab["content"]["sampleRepo"], lab["content"]["old"], lab["content"]["new"]
        want = new if running_image_commit(lab, MAIN, "unidesk", "backend-core") != new else old
        rc, doc, events = apply_and_wait(
            lab,
            state,
            write_manifest(tmp_path / "deploy.json", repo, {"backend-core": want}),
            "--service",
            "backend-core",
            "--force",
        )
        assert rc == 0, doc
        assert f"target_build_context_pruned={stale}" in texts(events, "backend-core", "source")
        assert contexts_left(lab, MAIN) == ["backend-core-deadbeef0000-00000002"]  # possibly another job's: kept
    finally:
        ssh(lab, MAIN, ["rm", "-rf", "--", stale, fresh])


def test_a_dead_jobs_build_context_is_pruned_by_the_next_apply_even_when_it_reuses_a_built_image(lab, state, tmp_path):
    """R2-lab found it: pruning lived in the source step, which a reused build skips, so a context
    left by a worker killed mid-build outlived the next (reusing) apply."""
    repo, old, new = lab["content"]["sampleRepo"], lab["content"]["old"], lab["content"]["new"]
    back = running_image_commit(lab, MAIN, "unidesk", "backend-core")
    away = new if back != new else old
    rc, doc, _ = apply_and_wait(lab, state, write_manifest(tmp_path / "away.json", repo, {"backend-core": away}))
    assert rc == 0, doc
    work = next(t for t in json.loads(Path(lab["config"]).read_text())["targets"] if t["id"] == MAIN)["workDir"]
    dead = f"{work}/contexts/file--backend-core-{back[:12]}-0badc0de"  # a killed build's, minutes old
    ssh(lab, MAIN, ["mkdir", "-p", "--", dead])
    try:
        rc, doc, events = apply_and_wait(
            lab, state, write_manifest(tmp_path / "back.json", repo, {"backend-core": back})
        )
        assert rc == 0, doc
        assert service_steps(doc, "backend-core")["source"]["status"] == "skipped"  # the image was reused
        assert f"target_build_context_pruned={dead}" in texts(events, "backend-core")
        assert dead.rsplit("/", 1)[1] not in contexts_left(lab, MAIN)
    finally:
        ssh(lab, MAIN, ["rm", "-rf", "--", dead])


def test_k3s_apply_leaves_no_context_of_its_own_and_removes_dead_jobs_image_tarballs(lab, state, tmp_path):
    """R2-lab found both: a reused k3s build kept the context its source step made (only the build
    removed it), and a worker killed during `k3s-import` left its `docker save` tarball in
    <workDir>/images, which no later apply removed. Another service's or environment's are kept."""
    repo, old, new = lab["content"]["sampleRepo"], lab["content"]["old"], lab["content"]["new"]
    sid = "code-queue"
    for commit in (new, old):  # both built for code-queue on D601: the last apply below reuses
        rc, doc, _ = apply_and_wait(lab, state, write_manifest(tmp_path / f"{commit}.json", repo, {sid: commit}))
        assert rc == 0, doc
    work = next(t for t in json.loads(Path(lab["config"]).read_text())["targets"] if t["id"] == "D601")["workDir"]
    images = f"{work}/images"
    dead = [
        f"{images}/file--{sid}-{new[:12]}-unidesk-code-queue-d601-0badc0de.tar",
        f"{images}/file--{sid}-restore-x-0badc0de.tar",
    ]
    kept = [f"{images}/dev--{sid}-{new[:12]}-x-0badc0de.tar", f"{images}/file--{sid}-mgr-{new[:12]}-x-0badc0de.tar"]
    ssh(lab, "D601", ["sh", "-c", 'mkdir -p "$1" && shift && touch -- "$@"', "sh", images, *dead, *kept])
    try:
        rc, doc, events = apply_and_wait(lab, state, write_manifest(tmp_path / "again.json", repo, {sid: new}))
        assert rc == 0, doc
        assert service_steps(doc, sid)["build"]["status"] == "skipped"  # the image was reused
        assert not [c for c in contexts_left(lab, "D601") if c.startswith(f"file--{sid}-")]
        left = ssh(lab, "D601", ["ls", "-A", "--", images]).stdout.decode().split()
        assert {p.rsplit("/", 1)[1] for p in dead + kept} & set(left) == {p.rsplit("/", 1)[1] for p in kept}, left
        assert all(f"image_tmp_pruned={p}" in texts(events, sid) for p in dead)
    finally:
        ssh(lab, "D601", ["rm", "-f", "--", *dead, *kept])
