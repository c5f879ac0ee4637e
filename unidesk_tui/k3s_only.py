"""k3s-only services (Decision Center by default): nothing of theirs runs or listens outside k3s.

The specification forbids a main-server Compose service, a NodePort or a hostPort for Decision
Center. For a service the catalog marks `k3sOnly`, a k3s apply (file mode or environment) refuses,
before anything is applied, a catalog that gives it a compose declaration or a compose mode, and a
rendered manifest that exposes it on a node: a NodePort or LoadBalancer Service (or any port with a
`nodePort`), a container `hostPort`, or `hostNetwork`. Each problem names the offending object.
"""

from __future__ import annotations

from typing import Any

from unidesk_tui.catalog import Catalog, Microservice
from unidesk_tui.errors import ErrorCode, Problem

K3S_MODE = "k3sctl-managed"
NODE_SERVICE_TYPES = ("NodePort", "LoadBalancer")  # a LoadBalancer Service allocates node ports too


def catalog_problems(catalog: Catalog, ms: Microservice) -> list[Problem]:
    """A k3s-only service with a compose declaration, or deployed in a compose mode anywhere."""
    if not ms.is_k3s_only:
        return []
    index = next(i for i, m in enumerate(catalog.microservices) if m.id == ms.id)
    base = f"microservices[{index}]"
    problems: list[Problem] = []
    if ms.compose is not None:
        path = f"{base}.compose"
        problems.append(
            Problem(
                ErrorCode.K3S_ONLY_VIOLATION,
                f"{ms.id} is k3s-only: config.json {path} declares compose service "
                f"{ms.compose.project}/{ms.compose.service}; it must not have a Compose service (remove the "
                "declaration)",
                service=ms.id,
                path=path,
            )
        )
    for where, deployment in ms.deployments():
        if deployment.mode != K3S_MODE:
            path = f"{base}.{where}.mode"
            problems.append(
                Problem(
                    ErrorCode.K3S_ONLY_VIOLATION,
                    f"{ms.id} is k3s-only: config.json {path} is {deployment.mode}, a Compose service; "
                    f"it runs only as {K3S_MODE}",
                    service=ms.id,
                    path=path,
                )
            )
    return problems


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    return pod if isinstance(pod, dict) else {}


def _pod_labels(obj: dict[str, Any]) -> dict[str, Any]:
    template = (obj.get("spec") or {}).get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") if isinstance(template, dict) else None
    return labels if isinstance(labels, dict) else {}


def _name(obj: dict[str, Any], namespace: str) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')} {meta.get('namespace') or namespace}/{meta.get('name')}"


def _service_exposure(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(path below the object, why) for every way a Service opens a node port."""
    raw = obj.get("spec")
    spec: dict[str, Any] = raw if isinstance(raw, dict) else {}
    found = []
    if spec.get("type") in NODE_SERVICE_TYPES:
        found.append(("spec.type", f"type {spec['type']}"))
    for i, port in enumerate(spec.get("ports") or []):
        if isinstance(port, dict) and port.get("nodePort") is not None:
            found.append((f"spec.ports[{i}].nodePort", f"nodePort {port['nodePort']}"))
    return found


def _pod_exposure(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(path below the object, why) for hostNetwork and every container hostPort of a workload."""
    pod = _pod_spec(obj)
    found = []
    if pod.get("hostNetwork"):
        found.append(("spec.template.spec.hostNetwork", "hostNetwork: true"))
    for group in ("initContainers", "containers"):
        for i, container in enumerate(pod.get(group) or []):
            if not isinstance(container, dict):
                continue
            for j, port in enumerate(container.get("ports") or []):
                if isinstance(port, dict) and port.get("hostPort") is not None:
                    where = f"spec.template.spec.{group}[{i}].ports[{j}].hostPort"
                    found.append((where, f"container {container.get('name')} hostPort {port['hostPort']}"))
    return found


def _selects(service: dict[str, Any], labels: dict[str, Any]) -> bool:
    selector = (service.get("spec") or {}).get("selector") if isinstance(service.get("spec"), dict) else None
    return isinstance(selector, dict) and bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def manifest_problems(
    service_id: str, manifest: str, namespace: str, rendered: list[dict], everything: list[dict]
) -> list[Problem]:
    """What in the rendered objects, or in any other Service of the same manifest selecting the
    service's pods, would expose a k3s-only service on a node. `everything` is the whole manifest."""
    problems: list[Problem] = []

    def refuse(obj: dict[str, Any], where: str, why: str, note: str = "") -> None:
        name = _name(obj, namespace)
        problems.append(
            Problem(
                ErrorCode.K3S_ONLY_VIOLATION,
                f"{service_id} is k3s-only: {name} in {manifest}{note} has {why}; it must not be exposed on a node "
                "(no NodePort, hostPort or hostNetwork)",
                service=service_id,
                path=f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}.{where}",
            )
        )

    pods = [_pod_labels(o) for o in rendered if o.get("kind") != "Service"]
    for obj in rendered:
        exposure = _service_exposure(obj) if obj.get("kind") == "Service" else _pod_exposure(obj)
        for where, why in exposure:
            refuse(obj, where, why)
    for obj in everything:
        if obj.get("kind") != "Service" or any(_name(obj, namespace) == _name(r, namespace) for r in rendered):
            continue
        if any(_selects(obj, labels) for labels in pods if labels):
            for where, why in _service_exposure(obj):
                refuse(obj, where, why, note=f" (it selects {service_id}'s pods)")
    return problems
