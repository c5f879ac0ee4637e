"""The dev environment end to end on the session lab (issue 10's acceptance): real sshd, dockerd,
containerd, CNI pod network, git remote and proxies; only the Kubernetes API is emulated.

- `deploy apply --env dev --service X --wait` succeeds for backend-core, frontend and code-queue,
  passing a logged `validate` step before anything is built or applied;
- production's objects in `unidesk` are the same before and after those applies;
- production code-queue (file mode) and dev code-queue run at once, each healthy through its own
  microservice proxy;
- a commit whose dev manifest breaks a guardrail fails at `validate` with `dev_manifest_invalid`
  naming the object and the rule, and the dev objects are unchanged.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers_live import GIT_ENV, apply, cli, git, ssh, write_manifest  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.slow]

D601 = "D601"
SLICE = ("backend-core", "frontend", "code-queue")


def kubectl(lab, *args: str) -> str:
    return ssh(lab, D601, ["kubectl", "--kubeconfig", str(lab["kubeconfig"]), *args]).stdout.decode()


def production_names(lab) -> list[str]:
    """The spec's post-check: `kubectl -n unidesk get deploy,sts,svc,secret,pvc -o name` on D601."""
    return kubectl(lab, "-n", "unidesk", "get", "deploy,sts,svc,secret,pvc", "-o", "name").split()


def versions(lab, ns: str) -> dict[str, str]:
    """Each object's identity and desired state (uid, generation, spec/data, annotations): status
    updates by the node (readiness) are not writes of an apply."""
    items = json.loads(kubectl(lab, "-n", ns, "get", "deploy,sts,svc,secret,configmap,pvc", "-o", "json"))["items"]
    return {
        f"{i['kind']}/{i['metadata']['name']}": json.dumps(
            [
                i["metadata"]["uid"],
                i["metadata"].get("generation"),
                i["metadata"].get("annotations"),
                i.get("spec"),
                i.get("data"),
            ],
            sort_keys=True,
        )
        for i in items
    }


def health(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def steps(job: dict) -> list[tuple[str, str]]:
    return [(s["name"], s["status"]) for s in job["steps"]]


@pytest.fixture(scope="module")
def dev_applied(lab, tmp_path_factory):
    """Production code-queue applied in file mode first (so `unidesk` is not empty), then the dev slice."""
    state = tmp_path_factory.mktemp("dev-state")
    manifest = write_manifest(
        state / "deploy.json", lab["content"]["sampleRepo"], {"code-queue": lab["content"]["new"]}
    )
    prod = apply(lab, state, manifest, "--service", "code-queue", "--wait")
    before = (production_names(lab), versions(lab, "unidesk"))
    docs = {sid: cli(lab, state, "deploy", "apply", "--env", "dev", "--service", sid, "--wait") for sid in SLICE}
    yield {
        "state": state,
        "prod": prod,
        "before": before,
        "after": (production_names(lab), versions(lab, "unidesk")),
        "docs": docs,
    }
    # later modules expect production code-queue not running (as the seed leaves it)
    kubectl(lab, "-n", "unidesk", "delete", "deployment,service", "code-queue", "--ignore-not-found")


def test_dev_applies_of_the_slice_succeed_after_a_validate_step(lab, dev_applied):
    new = lab["content"]["new"]
    for sid, (rc, doc) in dev_applied["docs"].items():
        assert rc == 0 and doc["status"] == "succeeded", (sid, doc.get("errors"), doc.get("job", {}).get("steps"))
        names = [n for n, _ in steps(doc["job"])]
        assert names.index("k8s-manifest") < names.index("validate") < names.index("build") < names.index("k8s-apply")
        assert ("validate", "succeeded") in steps(doc["job"])
    dev = json.loads(kubectl(lab, "-n", "unidesk-dev", "get", "deploy", "-o", "json"))["items"]
    stamped = {d["metadata"]["name"]: d["metadata"]["annotations"].get("UNIDESK_DEPLOY_COMMIT") for d in dev}
    for name in (
        "backend-core-dev",
        "frontend-dev",
        "code-queue-scheduler-dev",
        "code-queue-read-dev",
        "code-queue-write-dev",
        "d601-dev-provider-egress-proxy",
    ):
        assert stamped[name] == new, stamped
    egress = next(d for d in dev if d["metadata"]["name"] == "d601-dev-provider-egress-proxy")
    assert (
        egress["spec"]["template"]["spec"]["containers"][0]["image"] == "unidesk-provider-egress:dev"
    )  # fixed, as declared
    # backend-core-dev wrote its log under /var/log/unidesk-dev (a hostPath below D601's lab root)
    log = lab["layout"].host_root(D601) / "var" / "log" / "unidesk-dev" / "backend-core.log"
    assert new in log.read_text()


@pytest.mark.parametrize("sid", SLICE)
def test_dev_check_live_reads_the_dev_runtime_in_sync(lab, dev_applied, sid):
    new = lab["content"]["new"]
    rc, doc = cli(lab, dev_applied["state"], "deploy", "check", "--env", "dev", "--live", "--service", sid)
    item = doc["services"][0]
    assert rc == 0 and doc["errors"] == [], doc
    assert item["live"]["state"] == "in-sync" and item["live"]["commit"] == new and item["action"] == "noop"
    assert item["applyEnabled"] is True
    assert item["live"]["evidence"]["namespace"] == "unidesk-dev"
    assert item["live"]["evidence"]["health"]["url"].startswith(lab["layout"].dev_msproxy_url)
    if sid == "code-queue":  # every Deployment of the slice was read
        assert set(item["live"]["evidence"]["deployments"]) == {
            "code-queue-scheduler-dev",
            "code-queue-read-dev",
            "code-queue-write-dev",
            "d601-dev-provider-egress-proxy",
        }
    # without --live: the spec's dry-run plan, no runtime read
    rc, doc = cli(lab, dev_applied["state"], "deploy", "check", "--env", "dev", "--service", sid)
    assert rc == 3 and doc["services"][0]["live"] is None and "live runtime not read" in doc["services"][0]["reason"]


def test_production_objects_are_unchanged_by_dev_applies(dev_applied):
    names, rvs = dev_applied["before"]
    assert {"deployment.apps/code-queue", "service/code-queue"} <= set(names)
    assert dev_applied["after"] == (names, rvs)  # same names, and not one of them written to


def test_production_and_dev_code_queue_run_at_once_each_healthy_through_its_own_proxy(lab, dev_applied):
    new = lab["content"]["new"]
    rc, doc = dev_applied["prod"]
    assert rc == 0 and doc["status"] == "succeeded", doc.get("errors")
    prod = health(f"{lab['msproxyUrl']}/api/microservices/code-queue/health")
    dev = health(f"{lab['layout'].dev_msproxy_url}/api/microservices/code-queue/health")
    assert prod["deploy"]["commit"] == new and "environment" not in prod
    assert dev["deploy"]["commit"] == new and dev["environment"] == "dev" and dev["namespace"] == "unidesk-dev"
    # both on container port 4222, in their own pods
    cluster = json.loads(lab["layout"].cluster_file.read_text())["services"]
    prod_ep, dev_ep = (
        cluster["unidesk/code-queue"]["endpoints"][0],
        cluster["unidesk-dev/code-queue-scheduler-dev"]["endpoints"][0],
    )
    assert prod_ep["ip"] != dev_ep["ip"] and "4222" in prod_ep["ports"] and "4222" in dev_ep["ports"]


@contextlib.contextmanager
def frontend_at(lab, tmp_path: Path, edit: Callable[[Path], None], message: str) -> Iterator[str]:
    """A sample-service commit (from `new`) changed by `edit(checkout)`, named for frontend by deploy/dev
    while the block runs; deploy/dev and the sample branches are put back afterwards."""
    content = lab["content"]
    sample = tmp_path / "sample"
    subprocess.run(["git", "clone", "-q", content["sampleRepo"], str(sample)], check=True, env=GIT_ENV)
    git(sample, "checkout", "-q", content["new"])
    edit(sample)
    git(sample, "commit", "-qam", message)
    commit = git(sample, "rev-parse", "HEAD")
    branch = f"refs/heads/dev-test-{uuid.uuid4().hex[:6]}"
    git(sample, "push", "-q", "origin", f"HEAD:{branch}")
    ws = tmp_path / "ws"
    subprocess.run(
        ["git", "clone", "-q", "-b", "deploy/dev", content["workspaceRepo"], str(ws)], check=True, env=GIT_ENV
    )
    original = git(ws, "rev-parse", "HEAD")
    doc = json.loads((ws / "deploy.json").read_text())
    next(s for s in doc["services"] if s["id"] == "frontend")["commitId"] = commit
    (ws / "deploy.json").write_text(json.dumps(doc, indent=2) + "\n")
    git(ws, "commit", "-qam", f"deploy/dev: frontend at {message}")
    git(ws, "push", "-q", "origin", "HEAD:refs/heads/deploy/dev")
    try:
        yield commit
    finally:
        git(ws, "push", "-q", "--force", "origin", f"{original}:refs/heads/deploy/dev")
        git(sample, "push", "-q", "origin", f":{branch}")


@pytest.fixture
def guardrail_breaking_commit(lab, tmp_path):
    """A sample-service commit whose dev core manifest makes frontend-dev a NodePort, named by deploy/dev."""

    def nodeport(sample: Path) -> None:
        path = sample / "k3s" / "dev" / "unidesk-dev-core.k8s.yaml"
        text = path.read_text()
        assert "spec: {type: ClusterIP, selector: {app: frontend-dev}" in text
        path.write_text(
            text.replace(
                "spec: {type: ClusterIP, selector: {app: frontend-dev}",
                "spec: {type: NodePort, selector: {app: frontend-dev}",
            )
        )

    with frontend_at(lab, tmp_path, nodeport, "frontend-dev as a NodePort (breaks a dev guardrail)") as bad:
        yield bad


def test_a_guardrail_breaking_commit_fails_at_validate_and_changes_no_dev_object(
    lab, dev_applied, guardrail_breaking_commit
):
    before = versions(lab, "unidesk-dev")
    rc, doc = cli(lab, dev_applied["state"], "deploy", "apply", "--env", "dev", "--service", "frontend", "--wait")
    assert rc == 1 and doc["status"] == "failed"
    job = doc["job"]
    failed = [(n, s) for n, s in steps(job) if s == "failed"]
    assert failed == [("validate", "failed")], steps(job)
    assert all(
        s in ("skipped", "pending") for n, s in steps(job)[[n for n, _ in steps(job)].index("validate") + 1 :]
    ), steps(job)
    errors = doc["errors"]
    assert errors[0]["code"] == "dev_manifest_invalid" and errors[0]["service"] == "frontend"
    assert "Service/frontend-dev" in errors[0]["message"] and "[rule cluster-ip-only]" in errors[0]["message"]
    assert versions(lab, "unidesk-dev") == before


def test_a_missing_fixed_image_fails_at_validate_with_image_not_found_before_anything_is_applied(lab, dev_applied):
    from unidesk_lab import foundation

    image = "docker.io/library/unidesk-provider-egress:dev"
    sock = str(lab["containerdSocket"])
    ssh(lab, D601, ["ctr", "-a", sock, "-n", "k8s.io", "images", "rm", image])
    before = versions(lab, "unidesk-dev")
    try:
        rc, doc = cli(lab, dev_applied["state"], "deploy", "apply", "--env", "dev", "--service", "code-queue", "--wait")
        assert rc == 1 and [n for n, s in steps(doc["job"]) if s == "failed"] == ["validate"], steps(doc["job"])
        error = doc["errors"][0]
        assert error["code"] == "image_not_found" and error["service"] == "code-queue"
        assert (
            "Deployment/d601-dev-provider-egress-proxy" in error["message"]
            and "unidesk-provider-egress:dev" in error["message"]
        )
        assert versions(lab, "unidesk-dev") == before
    finally:
        foundation.load_images(lab["layout"])  # the session lab keeps its fixed images


def test_a_dev_commit_that_exits_at_start_is_restored_inside_unidesk_dev_only(lab, dev_applied, tmp_path):
    """Issue 12: an environment run restores too, within the environment's namespace: frontend-dev
    is back at its previous commit and healthy, and production's objects are not written to."""
    new = lab["content"]["new"]

    def crash(sample: Path) -> None:
        entry = sample / "app" / "entrypoint.sh"
        entry.write_text(
            entry.read_text().replace("set -e\n", 'set -e\necho "dev-test: refusing to start"\nexit 3\n', 1)
        )

    prod_before, dev_before = (production_names(lab), versions(lab, "unidesk")), versions(lab, "unidesk-dev")
    dep = "Deployment/frontend-dev"
    assert json.loads(dev_before[dep])[2]["UNIDESK_DEPLOY_COMMIT"] == new
    with frontend_at(lab, tmp_path, crash, "a frontend that exits at start"):
        rc, doc = cli(lab, dev_applied["state"], "deploy", "apply", "--env", "dev", "--service", "frontend", "--wait")
    assert rc == 1 and doc["status"] == "failed", doc.get("errors")
    job = doc["job"]
    assert [e["code"] for e in job["result"]["errors"]] == ["rollout_failed"], job["result"]
    assert job["result"]["restored"] == {"service": "frontend", "commit": new, "verified": True, "message": None}
    assert ("restore-verify", "succeeded") in steps(job), steps(job)
    # production untouched; in unidesk-dev only frontend-dev was written to, and is as it was
    assert (production_names(lab), versions(lab, "unidesk")) == prod_before
    dev_after = versions(lab, "unidesk-dev")
    unchanged = {k: v for k, v in dev_before.items() if k != dep}
    assert {k: v for k, v in dev_after.items() if k != dep} == unchanged
    assert json.loads(dev_after[dep])[2:] == json.loads(dev_before[dep])[2:]  # annotations and spec as before
    body = health(f"{lab['layout'].dev_msproxy_url}/api/microservices/frontend/health")
    assert body["deploy"]["commit"] == new and body["environment"] == "dev", body
