"""config.json: the catalog model, and the example workspace staying valid."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import catalog_doc
from unidesk_tui.catalog import load_catalog, parse_catalog
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.manifest import parse_manifest
from unidesk_tui.model import Environment

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "unidesk"


def errors_of(doc: dict) -> list[tuple[str, str]]:
    with pytest.raises(UnideskError) as exc:
        parse_catalog(json.dumps(doc))
    return [(p.code, p.path) for p in exc.value.problems]


def test_example_workspace_is_valid_and_complete():
    catalog = load_catalog(EXAMPLE / "config.json")
    assert {t.id for t in catalog.targets} == {"main-server", "D601", "D518"}
    ids = {m.id for m in catalog.microservices}
    assert ids == {
        "backend-core",
        "frontend",
        "code-queue",
        "code-queue-mgr",
        "decision-center",
        "k3sctl-adapter",
        "node-exporter",
    }
    assert catalog.microservice("node-exporter").unsupported_reason
    assert catalog.microservice("code-queue-mgr").deployment.mode == "internal-sidecar"
    assert (
        catalog.microservice("k3sctl-adapter").deployment.mode == "unidesk-direct"
    )  # a control bridge stays outside k3s
    manifest = parse_manifest((EXAMPLE / "deploy.json").read_bytes())
    assert {s.id for s in manifest.services} <= ids


def test_example_k8s_manifests_stay_in_their_namespaces():
    catalog = load_catalog(EXAMPLE / "config.json")
    for ms in catalog.microservices:
        for env in (Environment.FILE, Environment.DEV):
            _, k8s = ms.for_environment(env)
            if k8s is None:
                continue
            docs = [d for d in yaml.safe_load_all((EXAMPLE / k8s.manifest).read_text()) if d]
            names = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
            assert set(k8s.deployments) <= names, (ms.id, k8s.manifest)
            assert all(d["metadata"].get("namespace") == k8s.namespace for d in docs)


def test_spec_default_paths():
    doc = catalog_doc("https://h/r")
    t = parse_catalog(json.dumps(doc)).target("D601")
    assert t.k3s.kubeconfig == "/etc/rancher/k3s/k3s.yaml"
    assert t.k3s.containerdSocket == "/run/k3s/containerd/containerd.sock"
    assert t.docker.socket == "/var/run/docker.sock"


def test_unknown_keys_and_bad_values_name_their_path():
    doc = catalog_doc("https://h/r")
    doc["targets"][0]["sshPassword"] = "hunter2"
    doc["microservices"][0]["build"] = {**doc["microservices"][0]["build"], "dockerfile": "../../etc/passwd"}
    doc["microservices"][1]["deployment"] = {"mode": "helm", "target": "main-server"}
    got = errors_of(doc)
    assert (ErrorCode.CONFIG_INVALID, "targets[0].sshPassword") in got
    assert (ErrorCode.CONFIG_INVALID, "microservices[0].build.dockerfile") in got
    assert (ErrorCode.CONFIG_INVALID, "microservices[1].deployment.mode") in got


def test_references_are_checked():
    doc = catalog_doc("https://h/r")
    bad = copy.deepcopy(doc)
    bad["microservices"][0]["deployment"]["target"] = "D999"
    assert errors_of(bad)[0][0] == ErrorCode.CONFIG_INVALID
    bad = copy.deepcopy(doc)
    bad["microservices"].append(copy.deepcopy(bad["microservices"][0]))
    assert errors_of(bad)[0][0] == ErrorCode.CONFIG_INVALID


def test_database_fingerprint_is_stable_and_distinguishes():
    c = parse_catalog(json.dumps(catalog_doc("https://h/r")))
    dev, prod = c.environments["dev"].database, c.environments["prod"].database
    assert dev.fingerprint() == dev.fingerprint() and dev.fingerprint() != prod.fingerprint()
    assert len(dev.fingerprint()) == 12


def test_catalog_commit_is_not_deploy_authority():
    """repository.commitId is read but the plan uses deploy.json's commit (see test_cli)."""
    c = parse_catalog(json.dumps(catalog_doc("https://h/r")))
    assert c.microservice("backend-core").repository.commitId == "0000000"


def test_secrets_in_rejected_values_are_not_echoed():
    doc = catalog_doc("https://h/r")
    doc["targets"][1]["egressProxy"] = "http://gw:pa55w0rd@127.0.0.1:18789"
    with pytest.raises(UnideskError) as exc:
        parse_catalog(json.dumps(doc))
    assert all("pa55w0rd" not in p.message for p in exc.value.problems)
    assert exc.value.problems[0].path == "targets[1].egressProxy"


def _example() -> dict:
    return json.loads((EXAMPLE / "config.json").read_text())


def _index(doc: dict, service_id: str) -> int:
    return next(i for i, m in enumerate(doc["microservices"]) if m["id"] == service_id)


def test_k3sctl_adapter_is_a_control_bridge_and_decision_center_k3s_only_by_default():
    catalog = load_catalog(EXAMPLE / "config.json")
    assert catalog.microservice("k3sctl-adapter").is_control_bridge
    assert not catalog.microservice("k3sctl-adapter").is_k3s_only
    assert catalog.microservice("decision-center").is_k3s_only
    assert not catalog.microservice("decision-center").is_control_bridge
    assert not any(
        m.is_control_bridge or m.is_k3s_only
        for m in catalog.microservices
        if m.id not in ("k3sctl-adapter", "decision-center")
    )


def test_a_control_bridge_in_k3s_is_refused_with_its_path():
    doc = _example()
    i = _index(doc, "k3sctl-adapter")
    adapter = doc["microservices"][i]
    adapter["deployment"]["mode"] = "k3sctl-managed"
    adapter["k8s"] = {"manifest": "k3s/adapter.yaml", "namespace": "unidesk", "deployments": ["k3sctl-adapter"]}
    with pytest.raises(UnideskError) as exc:
        parse_catalog(json.dumps(doc))
    (problem,) = exc.value.problems
    assert (problem.code, problem.path, problem.service) == (
        ErrorCode.CONFIG_INVALID,
        f"microservices[{i}].deployment.mode",
        "k3sctl-adapter",
    )
    assert "control bridge" in problem.message and "outside k3s" in problem.message


def test_a_control_bridge_moved_into_k3s_by_an_environment_is_refused_too():
    doc = _example()
    i = _index(doc, "k3sctl-adapter")
    doc["microservices"][i]["environments"] = {
        "dev": {
            "deployment": {"mode": "k3sctl-managed", "target": "D601"},
            "k8s": {"manifest": "k3s/adapter.yaml", "namespace": "unidesk-dev", "deployments": ["k3sctl-adapter-dev"]},
        }
    }
    assert errors_of(doc) == [(ErrorCode.CONFIG_INVALID, f"microservices[{i}].environments.dev.deployment.mode")]


def test_control_bridge_is_a_catalog_field():
    doc = _example()
    j = _index(doc, "code-queue")
    doc["microservices"][j]["controlBridge"] = True  # code-queue's dev override is k3sctl-managed
    assert errors_of(doc) == [(ErrorCode.CONFIG_INVALID, f"microservices[{j}].environments.dev.deployment.mode")]
    doc["microservices"][j]["controlBridge"] = False
    i = _index(doc, "k3sctl-adapter")
    doc["microservices"][i]["k3sOnly"] = True  # contradicts the default control-bridge mark
    assert errors_of(doc) == [(ErrorCode.CONFIG_INVALID, f"microservices[{i}].k3sOnly")]
    doc["microservices"][i]["controlBridge"] = False  # an explicit override of the default
    assert not parse_catalog(json.dumps(doc)).microservice("k3sctl-adapter").is_control_bridge


# ---- every input failure is coded (issue 13) ------------------------------------------------------

BAD_JSON = {
    "not UTF-8": b'\xff{"targets": []}',
    "nested too deeply": b"[" * 5000 + b"]" * 5000,
    "nested deeply": b'{"x": ' + b"[" * 900 + b"]" * 900 + b"}",
    "a huge integer": b'{"targets": ' + b"1" * 5000 + b"}",
    "a lone surrogate key": b'{"\\ud800": 1}',
    "a lone surrogate value": b'{"targets": [{"id": "\\udfff"}]}',
}


@pytest.mark.parametrize("data", BAD_JSON.values(), ids=BAD_JSON.keys())
def test_undecodable_deep_or_oversized_config_is_config_invalid(data):
    with pytest.raises(UnideskError) as err:
        parse_catalog(data)
    problem = err.value.problems[0]
    assert problem.code == ErrorCode.CONFIG_INVALID and problem.message.startswith("config.json: ")
    json.dumps(err.value.problems[0].to_dict(), ensure_ascii=False).encode()  # the error document serializes


@pytest.mark.parametrize("data", BAD_JSON.values(), ids=BAD_JSON.keys())
def test_undecodable_deep_or_oversized_manifest_is_manifest_invalid(data):
    with pytest.raises(UnideskError) as err:
        parse_manifest(data)
    problem = err.value.problems[0]
    assert problem.code in (ErrorCode.MANIFEST_INVALID, ErrorCode.UNKNOWN_FIELD, ErrorCode.INVALID_VALUE), problem
    for p in err.value.problems:
        json.dumps(p.to_dict(), ensure_ascii=False).encode()  # a lone surrogate would fail here


def test_step_timeouts_default_per_kind_and_code_queue_builds_longer():
    from unidesk_tui.catalog import DEFAULT_TIMEOUTS, Microservice

    def ms(sid: str, **timeouts) -> Microservice:
        return Microservice.model_validate(
            {
                "id": sid,
                "deployment": {"mode": "unidesk-direct", "target": "t"},
                **({"timeouts": timeouts} if timeouts else {}),
            }
        )

    assert {k: ms("backend-core").timeout(k) for k in DEFAULT_TIMEOUTS} == DEFAULT_TIMEOUTS
    assert ms("code-queue").timeout("build") > 2 * ms("backend-core").timeout("build")
    assert ms("code-queue").timeout("rollout") == DEFAULT_TIMEOUTS["rollout"]
    assert ms("code-queue", build=60).timeout("build") == 60 and ms("backend-core", verify=5).timeout("verify") == 5
    with pytest.raises(ValueError):
        ms("backend-core", build=0)
