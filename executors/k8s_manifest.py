"""A service's Kubernetes objects from the manifest in its own repository commit.

The manifest (read from the target's mirror at the deployed commit, never from the operator's
tree) is narrowed to the service's declared Deployments and Services, checked to stay inside the
allowed namespace, its placeholders replaced and every Deployment stamped with UNIDESK_DEPLOY_*
annotations, pod-template annotations and container env. A placeholder left over, or a container
whose image names a placeholder but is not the one just built, refuses the render. A container that
declares a fixed image (no placeholder, e.g. the dev provider egress proxy) keeps it: the apply's
validate step requires that image in the node's containerd before anything is applied.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime

import yaml

from executors.containerd import image_tag
from executors.stamp import ENVS
from unidesk_tui.catalog import K8sObjects
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.identifiers import same_image

PLACEHOLDER_RE = re.compile(r"__[A-Z_]+__")
RESTARTED_AT = "unidesk.ai/deployed-at"


def _bad(service_id: str, message: str) -> UnideskError:
    return UnideskError.of(ErrorCode.ROLLOUT_FAILED, f"{service_id}: {message}", service=service_id)


def substitute(value, mapping: dict[str, str]):
    """Replace placeholders in every string of a parsed document (values only, never keys' YAML)."""
    if isinstance(value, str):
        for key, repl in mapping.items():
            value = value.replace(key, repl)
        return value
    if isinstance(value, list):
        return [substitute(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, mapping) for k, v in value.items()}
    return value


def narrow(text: str, objects: K8sObjects, service_id: str) -> list[dict]:
    """Only the Deployments and Services `objects` names, in manifest order; all must be present
    and in the allowed namespace."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise _bad(service_id, f"{objects.manifest} is not valid YAML: {exc}") from None
    wanted = {("Deployment", n) for n in objects.deployments} | {("Service", n) for n in objects.services}
    picked: list[dict] = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        key = (doc.get("kind"), (doc.get("metadata") or {}).get("name"))
        if key not in wanted:
            continue
        namespace = (doc.get("metadata") or {}).get("namespace") or objects.namespace
        if namespace != objects.namespace:
            raise _bad(
                service_id, f"{key[0]} {key[1]} targets namespace {namespace!r}; only {objects.namespace!r} is allowed"
            )
        picked.append(doc)
    missing = wanted - {(d.get("kind"), d["metadata"]["name"]) for d in picked}
    if missing:
        raise _bad(service_id, f"{objects.manifest} lacks {', '.join(f'{k} {n}' for k, n in sorted(missing))}")
    return picked


def stamp_deployment(doc: dict, env: dict[str, str], *, restart: bool) -> dict:
    """Annotations on the Deployment and its pod template, and env on every container."""
    doc = copy.deepcopy(doc)
    meta = doc.setdefault("metadata", {})
    meta.setdefault("annotations", {}).update(env)
    template = doc.setdefault("spec", {}).setdefault("template", {})
    tmeta = template.setdefault("metadata", {})
    annotations = tmeta.setdefault("annotations", {})
    annotations.update(env)
    if restart:  # --force with an unchanged commit still needs a new pod template
        annotations[RESTARTED_AT] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for container in (template.get("spec") or {}).get("containers") or []:
        items = [e for e in container.get("env") or [] if e.get("name") not in ENVS]
        container["env"] = items + [{"name": k, "value": v} for k, v in env.items()]
    return doc


def leftovers(value) -> set[str]:
    """Placeholders still present in any key or string of a parsed document."""
    if isinstance(value, str):
        return set(PLACEHOLDER_RE.findall(value))
    if isinstance(value, list):
        return set().union(*(leftovers(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(leftovers(k) | leftovers(v) for k, v in value.items())) if value else set()
    return set()


def containers(doc: dict) -> list[dict]:
    """The (non-init) containers of a Deployment's pod template."""
    spec = (((doc.get("spec") or {}).get("template") or {}).get("spec")) or {}
    return [c for c in spec.get("containers") or [] if isinstance(c, dict)]


def fixed_images(objects: list[dict], image: str) -> list[tuple[str, str]]:
    """(`Deployment/name/container`, image) for every rendered container that does not run the built
    `image`: declared fixed in the manifest (render refuses any other mismatch)."""
    return [
        (f"{d['kind']}/{d['metadata']['name']}/{c.get('name')}", str(c.get("image")))
        for d in objects
        if d.get("kind") == "Deployment"
        for c in containers(d)
        if not same_image(c.get("image"), image)
    ]


def render(
    text: str, objects: K8sObjects, service_id: str, image: str, env: dict[str, str], *, restart: bool = False
) -> list[dict]:
    """The objects to apply for one service, bound to `image`."""
    mapping = {
        "__IMAGE__": image,
        "__DEV_IMAGE_TAG__": image_tag(image),
        "__SERVICE_ID__": env["UNIDESK_DEPLOY_SERVICE_ID"],
        "__DEPLOY_REPO__": env["UNIDESK_DEPLOY_REPO"],
        "__DEPLOY_COMMIT__": env["UNIDESK_DEPLOY_COMMIT"],
        "__DEPLOY_REQUESTED_COMMIT__": env["UNIDESK_DEPLOY_REQUESTED_COMMIT"],
    }
    out = []
    for raw in narrow(text, objects, service_id):
        doc = substitute(raw, mapping)
        where = f"{doc['kind']} {doc['metadata']['name']} in {objects.manifest}"
        left = leftovers(doc)
        if left:
            raise _bad(service_id, f"{where} keeps unreplaced placeholders {', '.join(sorted(left))}")
        doc.setdefault("metadata", {})["namespace"] = objects.namespace
        if doc["kind"] == "Deployment":
            if not containers(doc):
                raise _bad(service_id, f"{where} declares no containers")
            pairs = zip(containers(raw), containers(doc), strict=False)
            templated = [c for r, c in pairs if PLACEHOLDER_RE.search(str(r.get("image", "")))]
            foreign = [f"{c.get('name')}={c.get('image')}" for c in templated if not same_image(c.get("image"), image)]
            if foreign:
                raise _bad(service_id, f"{where} runs {', '.join(foreign)}, not the built image {image}")
            doc = stamp_deployment(doc, env, restart=restart)
        out.append(doc)
    return out
