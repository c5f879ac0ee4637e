"""Live state against the lab: `deploy check` reads the real runtimes over SSH and stays read-only.

Hosts, sshd, dockerd, compose containers, the microservice proxy and git are the real programs;
only the Kubernetes API of D601 is emulated (unidesk_lab/kubeapi.py), reached through the SSH
tunnel with the kubeconfig read from the node.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers_live import (  # noqa: E402
    cli,
    compose_up,
    deploy_stamps,
    host_snapshot,
    kube_request,
    kube_snapshot,
    running_commit,
    service,
    workspace_with,
    write_manifest,
)

pytestmark = pytest.mark.lab

MAIN, D601, D518 = "main-server", "D601", "D518"


def items(doc: dict) -> dict[str, dict]:
    return {s["id"]: s for s in doc["services"]}


def other_commit(lab: dict, commit: str) -> str:
    return next(c for c in lab["content"]["commits"] if c != commit)


def test_desired_commit_running_is_noop(lab, state, tmp_path):
    commit = running_commit(lab, "backend-core")
    manifest = write_manifest(tmp_path / "deploy.json", lab["content"]["sampleRepo"], {"backend-core": commit})
    rc, doc = cli(lab, state, "deploy", "check", "--file", str(manifest))
    item = items(doc)["backend-core"]
    assert (rc, item["action"]) == (0, "noop"), doc
    live = item["live"]
    assert (live["state"], live["commit"], live["health"]) == ("in-sync", commit, "healthy")
    assert live["evidence"]["labels"]["unidesk.ai/source-commit"] == commit
    assert live["evidence"]["env"]["UNIDESK_DEPLOY_COMMIT"] == commit
    assert live["evidence"]["health"]["body"]["deploy"]["commit"] == commit
    assert item["imagePresent"] is True
    # --json check is the same document
    rc2, doc2 = cli(lab, state, "--json", "check", "--file", str(manifest))
    assert rc2 == 0 and items(doc2)["backend-core"]["live"]["state"] == "in-sync"


def test_old_healthy_commit_is_deploy(lab, state, tmp_path):
    old = running_commit(lab, "d518-worker")
    new = other_commit(lab, old)
    manifest = write_manifest(tmp_path / "deploy.json", lab["content"]["sampleRepo"], {"d518-worker": new})
    rc, doc = cli(lab, state, "deploy", "check", "--file", str(manifest))
    item = items(doc)["d518-worker"]
    assert rc == 3, doc
    assert item["action"] == "deploy"
    assert (item["live"]["state"], item["live"]["commit"], item["live"]["health"]) == ("drift", old, "healthy")
    assert item["commit"] == new


def test_labels_and_health_disagree_is_provenance_mismatch(lab, state, tmp_path):
    ms = service(lab, "code-queue-mgr")
    host = ms["deployment"]["target"]
    labelled = running_commit(lab, "code-queue-mgr")
    liar = other_commit(lab, labelled)
    repo = lab["content"]["sampleRepo"]
    # Same image (labels say `labelled`), but the container is started claiming `liar`: its env and
    # therefore its health body report another commit.
    compose_up(
        lab,
        host,
        ms,
        deploy_stamps(repo, liar),
    )
    try:
        manifest = write_manifest(tmp_path / "deploy.json", repo, {"code-queue-mgr": labelled})
        for _ in range(20):  # the recreated container needs a moment before health answers
            rc, doc = cli(lab, state, "deploy", "check", "--file", str(manifest))
            live = items(doc)["code-queue-mgr"]["live"]
            if live["evidence"].get("health", {}).get("status") == 200:
                break
        assert live["state"] == "provenance-mismatch", live
        assert live["commit"] is None
        assert live["evidence"]["layers"] == {"image label": labelled, "env": liar, "health": liar}
        assert items(doc)["code-queue-mgr"]["action"] == "deploy" and rc == 3
    finally:
        compose_up(
            lab,
            host,
            ms,
            deploy_stamps(repo, labelled),
        )


def test_image_only_service_is_unsupported(lab, state, tmp_path):
    manifest = write_manifest(
        tmp_path / "deploy.json", lab["content"]["sampleRepo"], {"node-exporter": lab["content"]["new"]}
    )
    rc, doc = cli(lab, state, "deploy", "check", "--file", str(manifest))
    item = items(doc)["node-exporter"]
    assert rc == 3 and item["action"] == "unsupported" and item["live"]["state"] == "unsupported", doc


def test_d518_sshd_stopped_is_unreachable_others_still_reported(lab, state, tmp_path):
    from unidesk_lab import lab as labapi

    commits = {sid: running_commit(lab, sid) for sid in ("backend-core", "code-queue-mgr", "d518-worker")}
    manifest = write_manifest(tmp_path / "deploy.json", lab["content"]["sampleRepo"], commits)
    assert labapi.stop_daemon(lab["dir"], D518, "sshd")
    try:
        # The subprocess timeout only guards the suite; the bounded time is the pool's connect timeout.
        rc, doc = cli(lab, state, "deploy", "check", "--file", str(manifest), timeout=90)
    finally:
        labapi.start_daemon(lab["dir"], D518, "sshd")
    got = items(doc)
    assert rc == 1
    assert got["d518-worker"]["live"]["state"] == "unreachable" and got["d518-worker"]["action"] == "error"
    assert [e["code"] for e in doc["errors"]] == ["target_unreachable"] and doc["errors"][0]["service"] == "d518-worker"
    for sid in ("backend-core", "code-queue-mgr"):
        assert got[sid]["live"]["state"] == "in-sync" and got[sid]["action"] == "noop", got[sid]


def test_k3s_deployment_annotations_read_through_the_tunnel(lab, state, tmp_path):
    """A Deployment created in the emulated API on D601 is read back via SSH tunnel + node kubeconfig."""
    commit = lab["content"]["old"]
    repo = lab["content"]["sampleRepo"]
    ns, name = "live-probe", "probe-deploy"
    kube_request(lab, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    stamp = {
        "UNIDESK_DEPLOY_SERVICE_ID": "k3s-probe",
        "UNIDESK_DEPLOY_REPO": repo,
        "UNIDESK_DEPLOY_COMMIT": commit,
        "UNIDESK_DEPLOY_REQUESTED_COMMIT": commit[:10],
    }
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": stamp},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "unidesk-live-probe:absent",
                            "env": [{"name": k, "value": v} for k, v in stamp.items()],
                        }
                    ]
                },
            },
        },
    }
    kube_request(lab, "DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    kube_request(lab, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments", dep)
    # Own workspace: the lab's catalog plus one k3s service naming that Deployment.
    ws = workspace_with(
        lab,
        tmp_path,
        lambda cfg: cfg["microservices"].append(
            {
                "id": "k3s-probe",
                "repository": {"url": repo},
                "deployment": {"mode": "k3sctl-managed", "target": D601},
                "build": {"image": "unidesk-live-probe:absent"},
                "health": {"exposesDeployCommit": False},
                "k8s": {"manifest": "k3s/none.yaml", "namespace": ns, "deployments": [name]},
            }
        ),
    )
    manifest = write_manifest(ws / "deploy.json", repo, {"k3s-probe": commit})
    try:
        rc, doc = cli(lab, state, "deploy", "check", "--file", str(manifest), workspace=ws)
    finally:
        kube_request(lab, "DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
        shutil.rmtree(ws, ignore_errors=True)
    live = items(doc)["k3s-probe"]["live"]
    facts = live["evidence"]["deployments"][name]
    assert facts["annotations"] == stamp
    assert facts["env"] == stamp
    assert facts["images"] == ["unidesk-live-probe:absent"]
    assert "complete" in facts["rollout"]
    # the image is not in containerd: rolled out, but no replica is available (degraded, not missing)
    assert live["state"] == "degraded" and items(doc)["k3s-probe"]["action"] == "deploy"


def test_check_is_read_only(lab, state, tmp_path):
    repo = lab["content"]["sampleRepo"]
    desired = {
        sid: lab["content"]["new"]
        for sid in ("backend-core", "code-queue-mgr", "d518-worker", "decision-center", "code-queue", "node-exporter")
    }
    manifest = write_manifest(tmp_path / "deploy.json", repo, desired)
    before = {h: host_snapshot(lab, h) for h in (MAIN, D601, D518)}
    kube_before = kube_snapshot(lab)
    rc, doc = cli(lab, state, "deploy", "check", "--file", str(manifest))
    rc2, doc2 = cli(lab, state, "--json", "check", "--file", str(manifest))
    assert rc in (0, 3) and rc2 == rc, doc
    assert [s["id"] for s in doc["services"]] == list(desired)
    assert {h: host_snapshot(lab, h) for h in (MAIN, D601, D518)} == before
    assert kube_snapshot(lab) == kube_before
