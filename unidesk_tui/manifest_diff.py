"""For a k3s service: the manifest as a deploy would apply it (rendered at the desired commit from
the local mirror) against the live objects, as a unified diff per object (what `kubectl diff` and
Argo CD's diff show). Read-only: the live side is read over the target's SSH tunnel.

Only the fields the manifest sets are compared: the live object's server-side fields (status,
uid, managedFields, defaults) would otherwise drown the change.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import subprocess
from dataclasses import dataclass, field
from typing import Any

import yaml

from unidesk_tui.errors import UnideskError
from unidesk_tui.resolve import GIT_ENV, mirror_dir
from unidesk_tui.workspace import Workspace

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 15.0
# Written by the stamp on every render: would always differ, so it is not a change.
VOLATILE_ANNOTATIONS = ("unidesk.ai/deployed-at",)


@dataclass
class ObjectDiff:
    kind: str
    name: str
    namespace: str
    diff: list[str] = field(default_factory=list)  # unified diff lines; empty: the same
    live_missing: bool = False


@dataclass
class ManifestDiff:
    manifest: str | None = None  # path@commit
    objects: list[ObjectDiff] = field(default_factory=list)
    note: str | None = None  # why (part of) the diff could not be made


def pruned(live: Any, wanted: Any) -> Any:
    """`live` reduced to the keys `wanted` sets (lists of named entries are matched by name)."""
    if isinstance(wanted, dict) and isinstance(live, dict):
        return {k: pruned(live[k], v) for k, v in wanted.items() if k in live}
    if isinstance(wanted, list) and isinstance(live, list):
        if all(isinstance(w, dict) and "name" in w for w in wanted):
            by_name = {e.get("name"): e for e in live if isinstance(e, dict)}
            return [pruned(by_name[w["name"]], w) for w in wanted if w["name"] in by_name]
        return [pruned(lv, w) for lv, w in zip(live, wanted, strict=False)] + live[len(wanted) :]
    return live


def _without_volatile(doc: dict) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(doc))
    for holder in (doc.get("metadata") or {}, ((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}):
        for key in VOLATILE_ANNOTATIONS:
            (holder.get("annotations") or {}).pop(key, None)
    return doc


def object_diff(rendered: dict, live: dict | None) -> ObjectDiff:
    meta = rendered.get("metadata") or {}
    out = ObjectDiff(rendered.get("kind", "?"), meta.get("name", "?"), meta.get("namespace", "?"))
    want = _without_volatile(rendered)
    if live is None:
        out.live_missing = True
        out.diff = [f"+{line}" for line in yaml.safe_dump(want, sort_keys=True).splitlines()]
        return out
    have = pruned(_without_volatile(live), want)
    a = yaml.safe_dump(have, sort_keys=True).splitlines()
    b = yaml.safe_dump(want, sort_keys=True).splitlines()
    out.diff = list(difflib.unified_diff(a, b, "live", "rendered", lineterm="", n=2))
    return out


async def _read_live(catalog, target: str, objects: list[dict]) -> list[dict | None]:
    from kubernetes_asyncio.client import AppsV1Api, CoreV1Api
    from kubernetes_asyncio.client.exceptions import ApiException

    from unidesk_tui.targets import TargetPool

    pool = TargetPool(catalog)
    try:
        session = await pool.session(target)
        api = await session.kube()

        async def one(doc: dict) -> dict | None:
            meta = doc["metadata"]
            read = {
                "Deployment": AppsV1Api(api).read_namespaced_deployment,
                "Service": CoreV1Api(api).read_namespaced_service,
            }.get(doc["kind"])
            if read is None:
                return None
            try:
                obj = await read(meta["name"], meta["namespace"], _request_timeout=READ_TIMEOUT_S)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return api.sanitize_for_serialization(obj)

        return list(await asyncio.wait_for(asyncio.gather(*(one(d) for d in objects)), READ_TIMEOUT_S))
    finally:
        await pool.close()


def manifest_diff(ws: Workspace, service_id: str, environment: str | None) -> ManifestDiff:
    """The rendered manifest of `service_id` against its live objects. Never raises: a failure is
    the `note`, and whatever was made before it is kept."""
    from executors.registry import executor_for
    from unidesk_tui.planning import run_plan

    out = ManifestDiff()
    run = run_plan(ws, "check", env=environment, services=[service_id])
    service = next((d for d in run.desired if d.id == service_id), None)
    if service is None or run.catalog is None or service.k8s is None or not service.commit:
        out.note = "; ".join(e.message for e in run.document.errors) or "no resolved k3s service to render"
        return out
    k8s = service.k8s
    out.manifest = f"{k8s.manifest}@{service.commit[:12]}"
    try:
        text = subprocess.run(
            ["git", f"--git-dir={mirror_dir(ws.state_dir, service.repo)}", "show", f"{service.commit}:{k8s.manifest}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
            env={**GIT_ENV, "PATH": "/usr/bin:/bin:/usr/local/bin"},
        ).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        out.note = f"cannot read {out.manifest} from the local mirror: {getattr(exc, 'stderr', '') or exc}".strip()
        return out
    try:
        rendered = executor_for(service.mode).manifest_objects(text, service)
    except UnideskError as exc:
        out.note = exc.problems[0].message
        return out
    try:
        live = asyncio.run(_read_live(run.catalog, service.target or "", rendered))
    except UnideskError as exc:
        out.note = f"live objects not read: {exc.problems[0].message}"
        out.objects = [object_diff(doc, None) for doc in rendered]
        for obj in out.objects:
            obj.live_missing = False  # unknown, not absent: shown as the manifest only
        return out
    except Exception as exc:  # an API or tunnel failure: show the render, say why there is no live side
        log.debug("live read for the manifest diff failed", exc_info=True)
        out.note = f"live objects not read: {type(exc).__name__}: {exc}"
        out.objects = [object_diff(doc, None) for doc in rendered]
        for obj in out.objects:
            obj.live_missing = False
        return out
    out.objects = [object_diff(doc, obj) for doc, obj in zip(rendered, live, strict=False)]
    return out
