"""The spec's remaining guards on the lab (issue 15): a control bridge stays outside k3s, file mode
cannot apply a dev manifest to production, every job records who ran it, and the build step's
buildx branch runs end to end through a plugin shim.

Real programs throughout: the `unidesk` CLI in a subprocess, the lab's git remote and hosts.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from helpers_live import (  # noqa: E402
    apply,
    cli,
    config,
    host_snapshot,
    job_status,
    kube_snapshot,
    running_image_commit,
    workspace_with,
    write_manifest,
)

pytestmark = [pytest.mark.lab]


def lab_manifest(lab: dict, environment: str | None = None) -> dict:
    doc = json.loads((Path(lab["workspace"]) / "deploy.json").read_text())
    if environment:
        doc["environment"] = environment
    return doc


def test_a_config_running_k3sctl_adapter_in_k3s_is_refused_with_its_path(lab, state, tmp_path):
    repo = lab["content"]["sampleRepo"]
    adapter = {
        "id": "k3sctl-adapter",
        "repository": {"url": repo},
        "deployment": {"mode": "k3sctl-managed", "target": "D601"},
        "build": {"dockerfile": "Dockerfile", "context": ".", "image": "unidesk-k3sctl-adapter:d601"},
        "k8s": {"manifest": "k3s/sample.k8s.yaml", "namespace": "unidesk", "deployments": ["k3sctl-adapter"]},
    }
    ws = workspace_with(lab, tmp_path, lambda cfg: cfg["microservices"].append(adapter))
    index = len(config(lab)["microservices"])  # the adapter's, appended last
    manifest = lab_manifest(lab)
    manifest["services"].append({"id": "k3sctl-adapter", "repo": repo, "commitId": lab["content"]["new"]})
    (ws / "deploy.json").write_text(json.dumps(manifest))
    for args in (("deploy", "check"), ("deploy", "apply", "--service", "k3sctl-adapter")):
        rc, doc = cli(lab, state, *args, workspace=ws)
        assert rc == 1 and not doc["ok"], doc
        path = f"microservices[{index}].deployment.mode"
        assert [(e["code"], e["path"]) for e in doc["errors"]] == [("config_invalid", path)]
        assert "control bridge" in doc["errors"][0]["message"]
    assert not (state / "jobs").exists()


def test_file_mode_apply_of_a_dev_manifest_is_refused_and_production_is_unchanged(lab, state, tmp_path):
    dev_file = tmp_path / "dev-declared.json"
    dev_file.write_text(json.dumps(lab_manifest(lab, "dev")))
    before = host_snapshot(lab, "main-server")
    rc, doc = apply(lab, state, dev_file, "--wait")
    assert rc == 1 and not doc["ok"] and not doc.get("jobId"), doc
    assert doc["errors"][0]["code"] == "environment_mismatch" and "--env dev" in doc["errors"][0]["message"]
    assert cli(lab, state, "job", "list")[1]["jobs"] == []
    assert host_snapshot(lab, "main-server") == before  # check and plan warnings: tests/test_apply.py


@pytest.mark.slow
def test_buildx_plugin_gets_inline_cache_and_host_network_and_job_status_shows_the_operator(lab, state, tmp_path):
    """A `docker-buildx` shim (unidesk_lab/buildx_shim.py) stands in for the plugin no registry
    ships: the real docker client dispatches `docker buildx` to it, it records its argv and builds
    with the built-in BuildKit."""
    from unidesk_lab import buildx_shim

    lay, host, sid = lab["layout"], "D518", "d518-worker"
    current = running_image_commit(lab, host, "unidesk", sid)
    manifest = write_manifest(tmp_path / "deploy.json", lab["content"]["sampleRepo"], {sid: current})
    buildx_shim.install(lay, host)
    try:
        rc, doc = apply(lab, state, manifest, "--force", "--wait")
    finally:
        buildx_shim.remove(lay, host)
    assert rc == 0 and doc["job"]["status"] == "succeeded", doc
    recorded = buildx_shim.recorded(lay, host)
    assert ["buildx", "version"] in [argv[1:3] for argv in recorded]  # the build step's detection
    (build,) = [argv for argv in recorded if argv[1:3] == ["buildx", "build"]]
    pairs = list(zip(build, build[1:], strict=False))
    assert ("--cache-to", "type=inline") in pairs and ("--network", "host") in pairs, build
    assert "--load" in build and f"unidesk.ai/source-commit={current}" in build
    status = job_status(lab, state, doc["jobId"])
    # `job status` (and `job list`) say who ran the job: checked on this job to spare another one
    workspace = str(Path(lab["workspace"]).resolve())
    who = {"user": pwd.getpwuid(os.getuid()).pw_name, "host": socket.gethostname(), "workspace": workspace}
    assert status["job"]["operator"] == who
    assert status["log"]["events"][0]["text"] == f"operator={who['user']}@{who['host']} workspace={who['workspace']}"
    assert [(j["id"], j["operator"]) for j in cli(lab, state, "job", "list")[1]["jobs"]] == [(doc["jobId"], who)]
    log = [e["text"] for e in status["log"]["events"] if e.get("service") == sid]
    assert any(t.startswith("target_build_builder=buildx") for t in log)
    assert "target_build_cache_to=type=inline -> " + config_image(lab, sid) in log
    assert running_image_commit(lab, host, "unidesk", sid) == current


def config_image(lab: dict, sid: str) -> str:
    return next(m for m in config(lab)["microservices"] if m["id"] == sid)["build"]["image"]


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0"}
    for who in ("AUTHOR", "COMMITTER"):  # fixed: the same commit every session
        env.update(
            {
                f"GIT_{who}_NAME": "UniDesk Lab",
                f"GIT_{who}_EMAIL": "lab@unidesk.invalid",
                f"GIT_{who}_DATE": "2026-01-20T08:00:00Z",
            }
        )
    proc = subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True, env=env)
    return proc.stdout.strip()


def push_nodeport_commit(lab: dict, tmp_path: Path) -> str:
    """A decision-center commit whose k3s manifest turns its Service into a NodePort, pushed to a
    side branch of the lab's sample repository (master is left alone)."""
    bare = lab["layout"].git_root / "sample-service.git"
    work = tmp_path / "sample-service"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    path = work / "k3s" / "sample.k8s.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    svc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "decision-center")
    svc["spec"]["type"] = "NodePort"
    svc["spec"]["ports"][0]["nodePort"] = 30083
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    git(work, "commit", "-q", "-am", "decision-center: expose it on a NodePort")
    git(work, "push", "-q", "--force", "origin", "HEAD:refs/heads/spec-guard-nodeport")
    return git(work, "rev-parse", "HEAD")


@pytest.mark.slow
def test_a_decision_center_commit_adding_a_nodeport_fails_before_apply_naming_the_object(lab, state, tmp_path):
    sid = "decision-center"
    commit = push_nodeport_commit(lab, tmp_path)
    manifest = write_manifest(tmp_path / "deploy.json", lab["content"]["sampleRepo"], {sid: commit})
    before = kube_snapshot(lab)
    rc, doc = apply(lab, state, manifest, "--wait")
    assert rc == 1 and doc["job"]["status"] == "failed", doc
    steps = {s["name"]: s for s in doc["job"]["steps"] if s["service"] == sid}
    failed = [s for s in steps.values() if s["status"] == "failed"]
    assert [s["code"] for s in failed] == ["k3s_only_violation"], steps
    assert "Service unidesk/decision-center" in failed[0]["message"] and "NodePort" in failed[0]["message"]
    errors = doc["job"]["result"]["errors"]
    want = ("k3s_only_violation", "Service/decision-center.spec.type", sid)
    assert [(e["code"], e["path"], e["service"]) for e in errors] == [want]
    assert "nodePort 30083" in errors[0]["message"]
    # nothing was built, imported or applied: production objects are unchanged (read on D601 itself)
    names = list(steps)
    after_guard = names[names.index(failed[0]["name"]) + 1 :]
    assert {"build", "k8s-apply"} <= set(after_guard) and all(steps[n]["status"] != "succeeded" for n in after_guard)
    assert kube_snapshot(lab) == before
