"""A service's Kubernetes Deployments as the node's API server shows them: the `UNIDESK_DEPLOY_*`
annotations and container env, the images and the rollout status. Nothing here changes the node.
"""

from __future__ import annotations

import asyncio

from executors.crashes import TAIL_LINES, Crash, pod_crashes
from executors.observe import Evidence
from executors.stamp import ENV_COMMIT, ENVS, commit_of
from unidesk_tui.errors import ErrorCode, UnideskError

# Annotation spellings accepted for the stamp: the env names themselves (the spec's wording) and
# the `unidesk.ai/deploy-*` form Kubernetes tooling prefers.
ANNOTATION_ALIASES = {
    f"unidesk.ai/deploy-{name.removeprefix('UNIDESK_DEPLOY_').lower().replace('_', '-')}": name for name in ENVS
}


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
    complete = (
        observed >= generation and updated >= want and available >= want and (status.get("replicas") or 0) <= updated
    )
    return {
        "replicas": want,
        "updated": updated,
        "available": available,
        "observedGeneration": observed,
        "generation": generation,
        "complete": complete,
    }


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


def deployment_layers(name: str, facts: dict) -> list[Evidence]:
    return [
        Evidence(
            f"{name} annotation",
            commit_of(facts["annotations"].get(ENV_COMMIT)),
            note="no UNIDESK_DEPLOY_COMMIT annotation",
        ),
        Evidence(f"{name} env", commit_of(facts["env"].get(ENV_COMMIT)), note="no UNIDESK_DEPLOY_COMMIT env"),
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
            raise UnideskError.of(
                ErrorCode.PROBE_FAILED, f"Deployment {namespace}/{name}: HTTP {exc.status} {exc.reason}"
            ) from None
        return api.sanitize_for_serialization(obj)

    found = await asyncio.gather(*(one(n) for n in names))
    return dict(zip(names, found, strict=False))


def current_template_pods(dep: dict, pods: list[dict], commit: str) -> list[dict]:
    """The pods made from the Deployment's current template for `commit` (pure). None until the
    controller has observed the newest generation: before that every pod is an older template's,
    and its crash (even of the same commit, e.g. a pod that crash-looped before this apply) says
    nothing about this rollout. Then only pods carrying the template's labels and annotations."""
    meta, status = dep.get("metadata") or {}, dep.get("status") or {}
    if (status.get("observedGeneration") or 0) < (meta.get("generation") or 1):
        return []
    template = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}

    def made_from_template(pod: dict) -> bool:
        pmeta = pod.get("metadata") or {}
        labels, annotations = pmeta.get("labels") or {}, pmeta.get("annotations") or {}
        return (
            annotations.get(ENV_COMMIT) == commit
            and all(labels.get(k) == v for k, v in (template.get("labels") or {}).items())
            and all(annotations.get(k) == v for k, v in (template.get("annotations") or {}).items())
        )

    return [pod for pod in pods if made_from_template(pod)]


async def rollout_crashes(session, namespace: str, deployments: dict[str, dict | None], commit: str) -> list[Crash]:
    """Containers of the pods rolled out for `commit` (matched by the Deployments' selectors and the
    pods' UNIDESK_DEPLOY_COMMIT annotation, copied from the pod template) that exited or cannot
    start, each with the last lines of its output (read-only)."""
    from kubernetes_asyncio.client import CoreV1Api
    from kubernetes_asyncio.client.exceptions import ApiException

    api = await session.kube()
    core = CoreV1Api(api)
    found: list[Crash] = []
    for dep in deployments.values():
        selector = (((dep or {}).get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not selector:
            continue
        try:
            listed = await core.list_namespaced_pod(
                namespace, label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())), _request_timeout=10
            )
        except ApiException as exc:
            raise UnideskError.of(
                ErrorCode.PROBE_FAILED, f"pods of {namespace}: HTTP {exc.status} {exc.reason}"
            ) from None
        for pod in current_template_pods(dep or {}, api.sanitize_for_serialization(listed).get("items") or [], commit):
            for crash in pod_crashes(pod):
                container = crash.where.rsplit(" container ", 1)[-1]
                try:
                    text = await core.read_namespaced_pod_log(
                        pod["metadata"]["name"],
                        namespace,
                        container=container,
                        tail_lines=TAIL_LINES,
                        previous=crash.restarts > 0 and crash.exit_code is not None,
                        _request_timeout=10,
                    )
                except ApiException:
                    text = ""
                found.append(crash.with_output(text if isinstance(text, str) else ""))
    return found
