"""The `k3sctl-managed` executor: services that run as Deployments in the node's native k3s.

Probe: for each of the service's Deployments (through the node's API server, reached over the
SSH tunnel with the node's own kubeconfig): the `UNIDESK_DEPLOY_*` annotations and container env,
the image and the rollout status; plus health through the microservice proxy.
"""

from __future__ import annotations

import asyncio
import logging

from executors.base import Executor, Step, register
from executors.docker_probe import image_present
from executors.health import health_expected, read_health
from executors.observe import health_layer, missing, observed
from executors.stamp import ENV_COMMIT, ENVS, Layer, commit_of
from unidesk_tui.catalog import Catalog
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.plan import DesiredService
from unidesk_tui.reconcile import Observation

log = logging.getLogger(__name__)

# Annotation spellings accepted for the stamp: the env names themselves (the spec's wording) and
# the `unidesk.ai/deploy-*` form Kubernetes tooling prefers.
ANNOTATION_ALIASES = {f"unidesk.ai/deploy-{name.removeprefix('UNIDESK_DEPLOY_').lower().replace('_', '-')}": name for name in ENVS}


def deploy_annotations(annotations: dict | None) -> dict[str, str]:
    """UNIDESK_DEPLOY_* values from annotations, whichever spelling is used."""
    out: dict[str, str] = {}
    for key, value in (annotations or {}).items():
        if key in ENVS:
            out[key] = value
        elif key in ANNOTATION_ALIASES:
            out.setdefault(ANNOTATION_ALIASES[key], value)
    return out


def rollout_status(dep: dict) -> dict:
    """The rollout as `kubectl rollout status` judges it."""
    meta, spec, status = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    want = spec.get("replicas", 1)
    generation = meta.get("generation") or 0
    observed = status.get("observedGeneration") or 0
    updated = status.get("updatedReplicas") or 0
    available = status.get("availableReplicas") or 0
    complete = observed >= generation and updated >= want and available >= want and (status.get("replicas") or 0) <= updated
    return {"replicas": want, "updated": updated, "available": available, "observedGeneration": observed, "generation": generation, "complete": complete}


def deployment_facts(dep: dict) -> dict:
    """Annotations (metadata and pod template), deploy env and images of one Deployment."""
    meta = dep.get("metadata") or {}
    template = (dep.get("spec") or {}).get("template") or {}
    annotations = deploy_annotations((template.get("metadata") or {}).get("annotations"))
    annotations.update(deploy_annotations(meta.get("annotations")))
    containers = (template.get("spec") or {}).get("containers") or []
    env: dict[str, str] = {}
    for container in containers:
        for item in container.get("env") or []:
            if item.get("name") in ENVS and isinstance(item.get("value"), str):
                env.setdefault(item["name"], item["value"])
    return {
        "annotations": annotations,
        "env": env,
        "images": [c.get("image") for c in containers],
        "rollout": rollout_status(dep),
    }


def deployment_layers(name: str, facts: dict) -> list[Layer]:
    return [
        Layer(f"{name} annotation", commit_of(facts["annotations"].get(ENV_COMMIT)), note="no UNIDESK_DEPLOY_COMMIT annotation"),
        Layer(f"{name} env", commit_of(facts["env"].get(ENV_COMMIT)), note="no UNIDESK_DEPLOY_COMMIT env"),
    ]


async def read_deployments(session, namespace: str, names: tuple[str, ...]) -> dict[str, dict | None]:
    """Each Deployment as a plain dict (None when absent)."""
    from kubernetes_asyncio.client import AppsV1Api
    from kubernetes_asyncio.client.exceptions import ApiException

    api = await session.kube()
    apps = AppsV1Api(api)

    async def one(name: str) -> dict | None:
        try:
            obj = await apps.read_namespaced_deployment(name, namespace, _request_timeout=10)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise UnideskError.of(ErrorCode.PROBE_FAILED, f"Deployment {namespace}/{name}: HTTP {exc.status} {exc.reason}") from None
        return api.sanitize_for_serialization(obj)

    found = await asyncio.gather(*(one(n) for n in names))
    return dict(zip(names, found))


class K3sExecutor(Executor):
    mode = "k3sctl-managed"

    async def probe(self, session, catalog: Catalog, service: DesiredService) -> Observation:
        k8s = service.k8s
        if k8s is None:
            raise UnideskError.of(ErrorCode.CONFIG_INVALID, f"{service.id}: k3sctl-managed without k8s objects", service=service.id)
        docker = await session.docker()
        deployments, present, reading = await asyncio.gather(
            read_deployments(session, k8s.namespace, k8s.deployments),
            image_present(docker, service.id, service.commit),
            read_health(catalog.health_url(service.id, service.environment)),
        )
        evidence = {"namespace": k8s.namespace, "deployments": {}}
        layers: list[Layer] = []
        absent, stalled = [], []
        for name, dep in deployments.items():
            if dep is None:
                absent.append(name)
                evidence["deployments"][name] = None
                continue
            facts = deployment_facts(dep)
            evidence["deployments"][name] = facts
            layers += deployment_layers(name, facts)
            if facts["rollout"]["available"] == 0:
                stalled.append(name)
        if absent or stalled:
            parts = [f"Deployment {k8s.namespace}/{n} not found" for n in absent] + [f"Deployment {k8s.namespace}/{n} has no available replica" for n in stalled]
            return missing("; ".join(parts), reading, evidence, present)
        layers.append(health_layer(reading, health_expected(catalog, service)))
        obs = observed(layers, service.commit, reading, evidence, present)
        incomplete = [n for n, d in evidence["deployments"].items() if not d["rollout"]["complete"]]
        if incomplete and obs.live.state == "in-sync":
            # A rollout still in progress does not prove that every replica runs the commit.
            live = obs.live.model_copy(update={"state": "provenance-mismatch", "message": f"rollout incomplete for {', '.join(incomplete)}"})
            return Observation(live, obs.imagePresent)
        return obs

    def steps(self, service: DesiredService) -> list[Step]:
        from executors.pipeline import k3s_steps

        return k3s_steps(service)


register(K3sExecutor)
