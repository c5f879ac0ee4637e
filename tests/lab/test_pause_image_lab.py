"""The k3s sandbox image on D601: pulled from the lab registry only through D601's egress proxy,
checked to run /pause, and a sleep-based impostor refused before anything is imported or applied.

The registry (Debian's docker-registry) sits on the wan beside the git remote; D601 has no route
there except its egress proxy. Everything is read back with ctr on D601 and the proxy's own log.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers_live import (  # noqa: E402
    apply_and_wait,
    kube_request,
    kube_snapshot,
    service,
    service_steps,
    ssh,
    texts,
    workspace_with,
    write_manifest,
)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

D601 = "D601"
SID = (
    "decision-center"  # test_pipeline's k3s test applies code-queue and checks decision-center by its own before/after
)
CHANNEL = "provider-gateway-ws-egress:http://127.0.0.1:18789"


def node(lab) -> dict:
    cfg = json.loads(Path(lab["config"]).read_text())
    return next(t for t in cfg["targets"] if t["id"] == D601)["k3s"]


def ctr(lab, *args: str, check: bool = True):
    n = node(lab)
    return ssh(lab, D601, ["ctr", "-a", n["containerdSocket"], "-n", n["containerdNamespace"], *args], check=check)


def images(lab) -> list[str]:
    return ctr(lab, "images", "ls", "-q").stdout.decode().split()


def run_apply(lab, state: Path, manifest: Path, workspace: Path | None = None):
    """`deploy apply --wait`; exit code, document, and this module's service's event texts and steps."""
    rc, doc, log = apply_and_wait(lab, state, manifest, workspace=workspace)
    return rc, doc, texts(log, SID), service_steps(doc, SID)


def forget(lab, ref: str) -> None:
    """Remove `ref` from containerd with its manifest, config and layer blobs (GC may keep them)."""
    listing = ctr(lab, "images", "ls").stdout.decode().splitlines()[1:]
    digests = [cols[2] for cols in (line.split() for line in listing) if cols and cols[0] == ref]
    for digest in list(digests):
        manifest = json.loads(ctr(lab, "content", "get", digest).stdout)
        digests += [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
    ctr(lab, "images", "rm", ref, check=False)
    if digests:
        ctr(lab, "content", "rm", *digests, check=False)


def other_commit(lab) -> str:
    """A commit carrying the k3s manifest that the live Deployment does not run (so apply deploys)."""
    ns, name = service(lab, SID)["k8s"]["namespace"], service(lab, SID)["k8s"]["deployments"][0]
    live = kube_request(lab, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    current = (live.get("metadata", {}).get("annotations") or {}).get("UNIDESK_DEPLOY_COMMIT")
    new, old = lab["content"]["new"], lab["content"]["old"]
    return new if current != new else old


def test_pause_image_is_pulled_through_the_egress_proxy_and_runs_pause(lab, tmp_path):
    ref = node(lab)["pauseImage"]
    assert ref.endswith("/rancher/mirrored-pause:3.6") and node(lab)["registryPlainHttp"] is True
    forget(lab, ref)  # absent, blobs included: this apply must fetch all of it
    assert ref not in images(lab)
    # D601 has no route to the registry: a direct pull fails
    direct = ctr(lab, "images", "pull", "--plain-http", ref, check=False)
    assert direct.returncode != 0 and b"unreachable" in direct.stderr, direct.stderr
    egress_log = Path(lab["layout"].egress_log(D601))
    seen = egress_log.stat().st_size
    manifest = write_manifest(tmp_path / "deploy.json", lab["content"]["sampleRepo"], {SID: other_commit(lab)})
    rc, doc, events, steps = run_apply(lab, tmp_path / "state", manifest)
    assert rc == 0 and doc["job"]["status"] == "succeeded", doc
    assert steps["k3s-pause-image"]["status"] == "succeeded"
    assert f"k3s_pause_image={ref}" in events
    assert f"k3s_pause_image_source=pulled via {CHANNEL}" in events
    assert "k3s_pause_image_entrypoint=/pause" in events
    # the proxy's own log shows the registry requests, made on D601's behalf
    host = ref.split("/", 1)[0]
    requests = [json.loads(line) for line in egress_log.read_text()[seen:].splitlines() if line.strip()]
    pulls = [
        r
        for r in requests
        if r["target"].startswith(f"http://{host}/v2/rancher/mirrored-pause/") and r["result"] == "ok"
    ]
    assert any("/manifests/" in r["target"] for r in pulls) and any("/blobs/" in r["target"] for r in pulls), requests
    # read back with ctr on D601: the image is there, and it really runs /pause (stops on SIGTERM)
    assert ref in images(lab)
    ctr(lab, "run", "-d", "--net-host", ref, "pause-lab-check")
    try:
        listed = ctr(lab, "tasks", "ls").stdout.decode()
        assert any(line.split()[:1] == ["pause-lab-check"] and "RUNNING" in line for line in listed.splitlines()), (
            listed
        )
        ctr(lab, "tasks", "kill", "-s", "SIGTERM", "pause-lab-check")
    finally:
        ssh(
            lab,
            D601,
            [
                "sh",
                "-c",
                'for i in 1 2 3 4 5 6 7 8 9 10; do "$@" tasks rm pause-lab-check 2>/dev/null && break; sleep 0.3; '
                'done; "$@" containers rm pause-lab-check',
                "sh",
                "ctr",
                "-a",
                node(lab)["containerdSocket"],
                "-n",
                node(lab)["containerdNamespace"],
            ],
            check=False,
        )
    # a second apply finds it present and checks it again without pulling
    seen = egress_log.stat().st_size
    rc, doc, events, steps = run_apply(
        lab,
        tmp_path / "state",
        write_manifest(tmp_path / "deploy2.json", lab["content"]["sampleRepo"], {SID: other_commit(lab)}),
    )
    assert rc == 0, doc
    assert "k3s_pause_image_source=present" in events and "k3s_pause_image_entrypoint=/pause" in events
    assert "mirrored-pause" not in egress_log.read_text()[seen:]


def test_sleep_based_pause_image_fails_the_job_and_applies_nothing(lab, tmp_path):
    real = node(lab)["pauseImage"]
    fake = real.rsplit(":", 1)[0] + ":fake"

    def fake_pause(cfg: dict) -> None:
        next(t for t in cfg["targets"] if t["id"] == D601)["k3s"]["pauseImage"] = fake

    ws = workspace_with(lab, tmp_path, fake_pause)
    manifest = write_manifest(ws / "deploy.json", lab["content"]["sampleRepo"], {SID: other_commit(lab)})
    forget(lab, fake)
    kube_before, images_before = kube_snapshot(lab), sorted(images(lab))
    rc, doc, events, steps = run_apply(lab, tmp_path / "state", manifest, workspace=ws)
    assert rc != 0 and doc["job"]["status"] == "failed", doc
    st = steps["k3s-pause-image"]
    assert st["status"] == "failed" and st["code"] == "pause_image_invalid", st
    assert fake in st["message"] and '["/bin/sleep", "infinity"]' in st["message"], st["message"]
    assert f"k3s_pause_image_source=pulled via {CHANNEL}" in events  # it was fetched, then refused
    assert "k3s_pause_image_entrypoint=/pause" not in events
    assert any(e["code"] == "pause_image_invalid" for e in doc["job"]["result"]["errors"])
    for name in ("source", "build", "k3s-import", "k8s-apply", "k8s-rollout", "verify"):
        assert steps[name]["status"] == "skipped", (name, steps[name])
    # nothing applied, nothing imported, and the impostor is not left in containerd
    assert kube_snapshot(lab) == kube_before
    assert sorted(images(lab)) == images_before and fake not in images(lab)
