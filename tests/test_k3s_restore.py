"""Pure logic of the k3s restore (executors/k3s_restore.py): which version a job can put back,
the name containerd keeps its image under, and an object as it is re-applied."""

from __future__ import annotations

from typing import Any

import pytest

from executors.k3s import K3sExecutor
from executors.k3s_restore import image_action, keep_name, previous_version, reapplicable
from unidesk_tui.model import DesiredService, Environment

A = "a" * 40
B = "b" * 40
REPO = "http://10.0.0.1/git/sample.git"


def dep(commit: str | None = A, *, image: str = "unidesk-dc:d601", available: int = 1, generation: int = 2) -> dict:
    stamp = {"UNIDESK_DEPLOY_REPO": REPO, "UNIDESK_DEPLOY_REQUESTED_COMMIT": "main"}
    if commit:
        stamp["UNIDESK_DEPLOY_COMMIT"] = commit
    return {
        "metadata": {
            "name": "dc",
            "namespace": "unidesk",
            "generation": generation,
            "resourceVersion": "41",
            "uid": "u-1",
            "creationTimestamp": "2026-12-02T00:00:00Z",
            "labels": {"app": "dc"},
            "annotations": stamp,
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "dc"}},
            "template": {
                "metadata": {"labels": {"app": "dc"}, "annotations": stamp},
                "spec": {
                    "containers": [
                        {"name": "c", "image": image, "env": [{"name": k, "value": v} for k, v in stamp.items()]},
                        {"name": "side", "image": "docker.io/library/busybox:1.36"},
                    ]
                },
            },
        },
        "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": available},
    }


def k3s_service(env: Environment = Environment.FILE) -> DesiredService:
    return DesiredService("decision-center", REPO, "main", None, "k3sctl-managed", "D601", None, B, env)


def test_a_rolled_out_stamped_deployment_is_the_previous_version():
    found = previous_version({"dc": dep()}, "unidesk-dc:d601")
    assert found == ({"commit": A, "repo": REPO, "requested": "main"}, "unidesk-dc:d601")
    # the image the job runs is picked among the containers (normalized), not a fixed sidecar
    found = previous_version({"dc": dep()}, "docker.io/library/busybox:1.36")
    assert not isinstance(found, str) and found[1] == "docker.io/library/busybox:1.36"
    # a renamed image: the Deployment's own first image is what ran (and what a restore re-runs)
    found = previous_version({"dc": dep()}, "unidesk-dc:renamed")
    assert not isinstance(found, str) and found[1] == "unidesk-dc:d601"


def test_nothing_provable_running_means_no_restore_point():
    assert previous_version({"dc": None}, "i") == "Deployment dc does not exist"
    assert previous_version({"dc": dep(available=0)}, "i") == "Deployment dc is not rolled out (0/1 available)"
    moving = dep()
    moving["metadata"]["generation"] = 3  # the controller has not observed the newest spec
    assert "not rolled out" in str(previous_version({"dc": moving}, "i"))
    assert "not stamped" in str(previous_version({"dc": dep(None)}, "i"))
    split = dep()
    split["spec"]["template"]["spec"]["containers"][0]["env"][0] = {"name": "UNIDESK_DEPLOY_COMMIT", "value": B}
    assert "not stamped with one commit" in str(previous_version({"dc": split}, "i"))
    assert previous_version({"dc": dep(A), "worker": dep(B)}, "i") == (
        f"its Deployments run different commits: {A[:12]}, {B[:12]}"
    )
    assert previous_version({}, "i") == "the service declares no Deployment"


def test_an_object_is_reapplied_without_status_and_server_metadata():
    live: dict[str, Any] = dep()
    live["metadata"]["managedFields"] = [{"manager": "x"}]
    body = reapplicable(live)
    assert "status" not in body and body["spec"] == live["spec"]
    assert body["metadata"] == {
        "name": "dc",
        "namespace": "unidesk",
        "labels": {"app": "dc"},
        "annotations": live["metadata"]["annotations"],
    }
    assert live["metadata"]["uid"] == "u-1"  # the recorded object itself is left as read


def test_the_kept_image_has_a_restore_tag_per_scope_and_service():
    assert (
        keep_name("unidesk-dc:d601", k3s_service())
        == "docker.io/library/unidesk-dc:unidesk-restore-base-decision-center"
    )
    assert (
        keep_name("registry.lab:5000/team/dc:dev", k3s_service(Environment.DEV))
        == "registry.lab:5000/team/dc:unidesk-restore-dev-decision-center"
    )
    assert keep_name("localhost:5000/dc", k3s_service()) == "localhost:5000/dc:unidesk-restore-base-decision-center"


def test_k3s_restores_after_apply_rollout_or_verify_and_restore_runs_rollout_and_verification():
    ex = K3sExecutor()
    steps = ex.steps(k3s_service())
    names = [s.name for s in steps]
    # the restore point is recorded before anything the job changes on the node
    assert names.index("k3s-preflight") < names.index("k3s-restore-point") < names.index("k3s-containerized")
    assert names.index("k3s-restore-point") < names.index("k3s-import")
    assert [s.name for s in steps if s.restores] == ["k8s-apply", "k8s-rollout", "verify"]
    assert [s.name for s in ex.restore_steps(k3s_service())] == ["restore", "restore-rollout", "restore-verify"]


def test_the_recorded_image_comes_back_by_retag_or_reimport_only_when_needed():
    old, new = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert image_action(old, old, old) == "unchanged"  # the job failed before its import
    assert image_action(new, old, old) == "retag"  # the import re-pointed the run name; the kept name holds it
    assert image_action(new, None, old) == "reimport"  # containerd lost it: from the target's Docker
    assert image_action(None, new, old) == "reimport"


def test_a_replace_refused_for_a_stale_resource_version_is_retried_on_the_latest():
    """CI run 3: the controller's status write between read and replace made restore's replace a 409
    Conflict, so the restore failed; a write must be based on the latest version (kubectl retries too)."""
    import asyncio

    from kubernetes_asyncio.client.exceptions import ApiException

    from executors.steps import replace_latest

    versions = iter(["8", "9"])
    written: list[str] = []

    async def read() -> dict:
        return {"metadata": {"resourceVersion": next(versions)}}

    async def write(body: dict) -> None:
        written.append(body["metadata"]["resourceVersion"])
        if body["metadata"]["resourceVersion"] != "9":
            raise ApiException(status=409, reason="Conflict")

    def body_for(live: dict) -> dict:
        return {"metadata": {"resourceVersion": live["metadata"]["resourceVersion"]}}

    asyncio.run(replace_latest({"metadata": {"resourceVersion": "7"}}, read, write, body_for))
    assert written == ["7", "8", "9"]

    async def refused(body: dict) -> None:
        raise ApiException(status=422, reason="Invalid")

    with pytest.raises(ApiException) as err:  # only a conflict is retried
        asyncio.run(replace_latest({"metadata": {"resourceVersion": "7"}}, read, refused, body_for))
    assert err.value.status == 422
