"""k3s-only services: the catalog and rendered-manifest guards (pure logic; the lab test applies)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from unidesk_tui.catalog import parse_catalog
from unidesk_tui.errors import ErrorCode
from unidesk_tui.k3s_only import catalog_problems, manifest_problems

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "unidesk"
DC_MANIFEST = EXAMPLE / "src/components/microservices/k3sctl-adapter/k3s/decision-center.k8s.yaml"


def example() -> dict:
    return json.loads((EXAMPLE / "config.json").read_text())


def index_of(doc: dict, sid: str) -> int:
    return next(i for i, m in enumerate(doc["microservices"]) if m["id"] == sid)


def problems_for(doc: dict, sid: str) -> list[tuple[str, str]]:
    catalog = parse_catalog(json.dumps(doc))
    return [(p.code, p.path) for p in catalog_problems(catalog, catalog.microservice(sid))]


def test_example_catalog_passes():
    catalog = parse_catalog((EXAMPLE / "config.json").read_text())
    assert all(catalog_problems(catalog, m) == [] for m in catalog.microservices)


def test_a_compose_declaration_or_compose_mode_for_decision_center_is_refused_with_its_path():
    doc = example()
    i = index_of(doc, "decision-center")
    doc["microservices"][i]["compose"] = {"project": "unidesk", "service": "decision-center"}
    assert problems_for(doc, "decision-center") == [(ErrorCode.K3S_ONLY_VIOLATION, f"microservices[{i}].compose")]
    doc = example()
    compose_mode = {"mode": "unidesk-direct", "target": "main-server"}
    doc["microservices"][i]["environments"] = {"dev": {"deployment": compose_mode}}
    path = f"microservices[{i}].environments.dev.deployment.mode"
    assert problems_for(doc, "decision-center") == [(ErrorCode.K3S_ONLY_VIOLATION, path)]


def test_k3s_only_is_a_catalog_field():
    doc = example()
    i = index_of(doc, "code-queue")  # base deployment: compose on D601, with a compose declaration
    doc["microservices"][i]["k3sOnly"] = True
    paths = {p for _, p in problems_for(doc, "code-queue")}
    assert paths == {f"microservices[{i}].compose", f"microservices[{i}].deployment.mode"}
    j = index_of(doc, "decision-center")
    doc["microservices"][j]["k3sOnly"] = False
    doc["microservices"][j]["compose"] = {"project": "unidesk", "service": "decision-center"}
    assert problems_for(doc, "decision-center") == []


def rendered_dc() -> tuple[list[dict], list[dict]]:
    docs = [d for d in yaml.safe_load_all(DC_MANIFEST.read_text()) if d]
    return [copy.deepcopy(d) for d in docs if d["metadata"]["name"] == "decision-center"], docs


def test_the_example_decision_center_manifest_passes():
    rendered, everything = rendered_dc()
    assert rendered and manifest_problems("decision-center", "dc.yaml", "unidesk", rendered, everything) == []


def test_nodeport_hostport_and_hostnetwork_are_refused_naming_the_object():
    rendered, everything = rendered_dc()
    svc = next(o for o in rendered if o["kind"] == "Service")
    dep = next(o for o in rendered if o["kind"] == "Deployment")
    svc["spec"]["type"] = "NodePort"
    svc["spec"]["ports"][0]["nodePort"] = 30400
    pod = dep["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    pod["containers"][0].setdefault("ports", [{"containerPort": 4400}])[0]["hostPort"] = 4400
    got = manifest_problems("decision-center", "dc.yaml", "unidesk", rendered, everything)
    assert {p.code for p in got} == {ErrorCode.K3S_ONLY_VIOLATION}
    assert sorted(p.path for p in got) == [
        "Deployment/decision-center.spec.template.spec.containers[0].ports[0].hostPort",
        "Deployment/decision-center.spec.template.spec.hostNetwork",
        "Service/decision-center.spec.ports[0].nodePort",
        "Service/decision-center.spec.type",
    ]
    assert "Service unidesk/decision-center in dc.yaml has type NodePort" in " ".join(p.message for p in got)


def test_a_separate_nodeport_service_selecting_its_pods_is_refused_another_services_is_not():
    rendered, everything = rendered_dc()
    dep = next(o for o in rendered if o["kind"] == "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    extra = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "decision-center-external", "namespace": "unidesk"},
        "spec": {"type": "NodePort", "selector": dict(labels), "ports": [{"port": 80, "targetPort": 4400}]},
    }
    other = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "someone-else", "namespace": "unidesk"},
        "spec": {"type": "NodePort", "selector": {"app": "someone-else"}, "ports": [{"port": 80}]},
    }
    got = manifest_problems("decision-center", "dc.yaml", "unidesk", rendered, [*everything, extra, other])
    assert [p.path for p in got] == ["Service/decision-center-external.spec.type"]
    assert "selects decision-center's pods" in got[0].message
