"""`dev-env validate --kubectl-dry-run`: kubectl's client dry-run on the dev target (D601) over
SSH, with the node's own kubeconfig. The API server it talks to is the lab's emulator."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers_live import cli  # noqa: E402

pytestmark = pytest.mark.lab

DEV = (
    Path(__file__).resolve().parents[2]
    / "examples"
    / "unidesk"
    / "src"
    / "components"
    / "microservices"
    / "k3sctl-adapter"
    / "k3s"
    / "dev"
)


def test_shipped_dev_manifests_pass_kubectl_client_dry_run_on_d601(lab, tmp_path):
    args = [
        a
        for name in ("unidesk-dev-foundation", "unidesk-dev-core", "unidesk-dev-code-queue")
        for a in ("--manifest", str(DEV / f"{name}.k8s.yaml"))
    ]
    rc, doc = cli(lab, tmp_path / "state", "dev-env", "validate", "--kubectl-dry-run", *args)
    assert rc == 0 and doc["ok"], doc["errors"]
    core = doc["manifests"][1]["kubectlDryRun"]
    assert core["target"] == "D601" and "deployment.apps/backend-core-dev" in core["objects"]


def test_kubectl_rejects_what_the_static_rules_cannot_see(lab, tmp_path):
    bad = tmp_path / "unidesk-dev-core.k8s.yaml"
    bad.write_text(
        (DEV / "unidesk-dev-core.k8s.yaml").read_text().replace("apiVersion: apps/v1", "apiVersion: apps/v9", 1)
    )
    rc, doc = cli(lab, tmp_path / "state", "dev-env", "validate", "--kubectl-dry-run", "--manifest", str(bad))
    assert rc == 1 and doc["manifests"][0]["kubectlDryRun"]["ok"] is False
    assert [e["code"] for e in doc["errors"]] == ["dev_manifest_invalid"] and "apps/v9" in doc["errors"][0]["message"]
