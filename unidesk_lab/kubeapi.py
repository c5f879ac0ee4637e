"""Kubernetes API emulator for the lab's k3s stand-in: a small aiohttp server speaking the real wire format.

No kube-apiserver can be installed from the reachable registries. PyPI `kmock` (0.8) was considered
and rejected: it lacks PUT, create-on-apply, server-set metadata (uid, resourceVersion, generation)
and any status/rollout behaviour, and its extension points are internal. This emulator serves, over
plain HTTP, exactly what the deploy path and `kubectl --validate=false` need:

- discovery (/version, /api, /api/v1, /apis, /apis/apps/v1, /apis/batch/v1);
- Namespace, ConfigMap, Secret, Service, PersistentVolumeClaim, ResourceQuota, LimitRange (v1),
  Deployment, StatefulSet (apps/v1) and Job (batch/v1);
- get, list (label/field selectors, all namespaces), watch, create, replace, delete, and patch with
  merge, strategic-merge, JSON-patch and server-side apply (create when missing, merge semantics);
- server-set uid, resourceVersion (one global counter), creationTimestamp, generation, and the
  /status subresource; errors are real `Status` objects.

Objects persist to DIR/objects.json (atomic rewrite). Unless --no-controller is given, the lab
controller (`kubecontroller`) runs in the same event loop and makes Deployments real containers in
containerd.

    python -m unidesk_lab.kubeapi --host 127.0.0.1 --port 6443 --data DIR \
        --containerd-socket SOCK --containerd-namespace k8s.io [--no-controller]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import logging
import re
import signal
import sys
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from unidesk_tui.files import atomic_write

log = logging.getLogger(__name__)

KUBE_VERSION = {"major": "1", "minor": "30", "gitVersion": "v1.30.0+unidesk-lab"}
HISTORY_LIMIT = 5000
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class Resource:
    """One served kind: where it lives in the API and which server behaviours apply to it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    status: bool = False  # has a /status subresource (main writes keep the stored status)
    generation: bool = False  # metadata.generation tracks spec changes
    short: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """Name used in error messages, e.g. `deployments.apps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", False, status=True, short=("ns",)),
    Resource("", "v1", "ConfigMap", "configmaps", True, short=("cm",)),
    Resource("", "v1", "Secret", "secrets", True),
    Resource("", "v1", "Service", "services", True, status=True, short=("svc",)),
    Resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, status=True, short=("pvc",)),
    Resource("", "v1", "ResourceQuota", "resourcequotas", True, status=True, short=("quota",)),
    Resource("", "v1", "LimitRange", "limitranges", True, short=("limits",)),
    Resource("", "v1", "Pod", "pods", True, status=True, short=("po",)),
    Resource("apps", "v1", "Deployment", "deployments", True, status=True, generation=True, short=("deploy",)),
    Resource("apps", "v1", "StatefulSet", "statefulsets", True, status=True, generation=True, short=("sts",)),
    Resource("batch", "v1", "Job", "jobs", True, status=True, generation=True),
)
NAMESPACES = RESOURCES[0]
GROUP_VERSIONS: dict[tuple[str, str], list[Resource]] = {}
for _r in RESOURCES:
    GROUP_VERSIONS.setdefault((_r.group, _r.version), []).append(_r)


def find_resource(group: str, plural: str) -> Resource | None:
    for res in RESOURCES:
        if res.group == group and res.plural == plural:
            return res
    return None


def resource_for_kind(api_version: str, kind: str) -> Resource | None:
    for res in RESOURCES:
        if res.api_version == api_version and res.kind == kind:
            return res
    return None


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An API failure, rendered as a `Status` object with the real reason and code."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        doc = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            doc["details"] = self.details
        return doc


def _details(res: Resource, name: str) -> dict:
    return {"name": name, "group": res.group, "kind": res.plural}


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', _details(res, name))


def already_exists(res: Resource, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists', _details(res, name))


def conflict(res: Resource, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        _details(res, name),
    )


def invalid(res: Resource, name: str, field: str, msg: str) -> ApiError:
    details = _details(res, name) | {
        "kind": res.kind,
        "causes": [{"reason": "FieldValueInvalid", "message": msg, "field": field}],
    }
    return ApiError(
        422,
        "Invalid",
        f'{res.kind}.{res.group or "core"} "{name}" is invalid: {field}: {msg}'
        if res.group
        else f'{res.kind} "{name}" is invalid: {field}: {msg}',
        details,
    )


def bad_request(msg: str) -> ApiError:
    return ApiError(400, "BadRequest", msg)


# --------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Strategic merge: lists of objects merged by key (field name -> merge key), as Kubernetes'
# built-in types declare with patchMergeKey. "ports" depends on context (container vs service).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "envFrom": None,
}


def _merge_key(field: str, items: list) -> str | None:
    if field == "ports":
        return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge patch: merge semantics, object lists merged by their merge key, directives honoured."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
            continue
        if key.startswith("$"):  # $setElementOrder/…, $retainKeys, $patch: ordering hints only here
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = strategic_merge(result.get(key), value)
        elif isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
            mkey = _merge_key(key, value)
            current = result.get(key)
            if mkey and isinstance(current, list):
                result[key] = _merge_list(current, value, mkey)
            else:
                result[key] = [
                    {k: v for k, v in i.items() if k != "$patch"}
                    for i in copy.deepcopy(value)
                    if i.get("$patch") != "delete"
                ]
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(current: list, patch: list, mkey: str) -> list:
    merged = copy.deepcopy(current)
    for item in patch:
        index = next(
            (i for i, old in enumerate(merged) if isinstance(old, dict) and old.get(mkey) == item.get(mkey)), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                merged.pop(index)
        elif item.get("$patch") == "replace" and index is not None:
            merged[index] = {k: v for k, v in item.items() if k != "$patch"}
        elif index is not None:
            merged[index] = strategic_merge(merged[index], item)
        else:
            merged.append(strategic_merge({}, item))
    return merged


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        try:
            kind, path = op["op"], _pointer(op["path"])
            if kind in ("move", "copy"):
                value = copy.deepcopy(_walk(doc, _pointer(op["from"])))
                if kind == "move":
                    doc = _remove(doc, _pointer(op["from"]))
                doc = _add(doc, path, value)
            elif kind == "add":
                doc = _add(doc, path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                doc = _remove(doc, path)
            elif kind == "replace":
                _walk(doc, path)  # must exist
                doc = _add(_remove(doc, path), path, copy.deepcopy(op["value"]))
            elif kind == "test":
                if _walk(doc, path) != op["value"]:
                    raise ApiError(
                        422,
                        "Invalid",
                        f"the server rejected our request due to an error in our "
                        f"request: testing value {op['path']} failed",
                    )
            else:
                raise bad_request(f"unknown json patch op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: json patch {op!r} failed: {exc!r}",
            ) from exc
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise KeyError(last)
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return None
    parent = _walk(doc, parts[:-1])
    if isinstance(parent, list):
        parent.pop(int(parts[-1]))
    else:
        del parent[parts[-1]]
    return doc


PATCH_TYPES: dict[str, Callable[[Any, Any], Any]] = {
    "application/merge-patch+json": merge_patch,
    "application/strategic-merge-patch+json": strategic_merge,
    "application/json-patch+json": json_patch,
    "application/apply-patch+yaml": strategic_merge,  # server-side apply with merge semantics
}


# --------------------------------------------------------------------------- selectors

_SET_TERM = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")

Matcher = Callable[[dict], bool]


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return [t for t in terms if t.strip()]


def parse_label_selector(selector: str | None) -> Matcher:
    """Label selector (equality and set-based) as a predicate on a labels dict."""
    tests: list[Matcher] = []
    for term in _split_terms(selector or ""):
        if m := _SET_TERM.match(term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                tests.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                tests.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif m := _EQ_TERM.match(term):
            key, op, value = m.groups()
            if op == "!=":
                tests.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                tests.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif m := _EXISTS_TERM.match(term):
            neg, key = m.groups()
            tests.append((lambda lb, k=key: k not in lb) if neg else (lambda lb, k=key: k in lb))
        else:
            raise bad_request(f"unable to parse requirement: {term!r}")
    return lambda labels: all(t(labels) for t in tests)


def parse_field_selector(selector: str | None) -> Matcher:
    """Field selector on metadata.name / metadata.namespace, as a predicate on an object."""
    tests: list[Matcher] = []
    for term in _split_terms(selector or ""):
        m = re.match(r"^\s*([A-Za-z.]+)\s*(==|!=|=)\s*(.*?)\s*$", term)
        if not m or m.group(1) not in ("metadata.name", "metadata.namespace"):
            raise bad_request(f'"{term}" is not a known field selector: only "metadata.name", "metadata.namespace"')
        field, op, value = m.groups()
        attr = field.split(".")[1]
        if op == "!=":
            tests.append(lambda o, a=attr, v=value: o["metadata"].get(a, "") != v)
        else:
            tests.append(lambda o, a=attr, v=value: o["metadata"].get(a, "") == v)
    return lambda obj: all(t(obj) for t in tests)


# --------------------------------------------------------------------------- store


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Key = tuple[str, str, str, str]  # (group, plural, namespace or "", name)
Listener = Callable[[str, Resource, dict], None]


@dataclass(eq=False)
class Watcher:
    """One open watch: which objects it wants and the queue its events go to."""

    res: Resource
    namespace: str | None
    match: Callable[[dict], bool]
    queue: asyncio.Queue


class Store:
    """All objects, the global resourceVersion counter, watch fan-out and persistence."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        self._objects: dict[Key, dict] = {}
        self._rv = 0
        self._history: deque[tuple[int, str, Resource, dict]] = deque(maxlen=HISTORY_LIMIT)
        self._watchers: set[Watcher] = set()
        self.listeners: list[Listener] = []
        self.allocate_cluster_ip: Callable[[set[str]], str] | None = None  # set when a pod network runs
        # (namespace, pod, tailLines) -> the pod's container output, or None (set by the lab controller)
        self.pod_log: Callable[[str, str, int | None, bool], str | None] | None = None
        self._load()
        if not self._objects:
            for ns in DEFAULT_NAMESPACES:
                self.create(NAMESPACES, None, {"metadata": {"name": ns}})

    # ---- persistence

    @property
    def path(self) -> Path | None:
        return self.data_dir / "objects.json" if self.data_dir else None

    def _load(self) -> None:
        if not self.path or not self.path.exists():
            return
        doc = json.loads(self.path.read_text())
        self._rv = int(doc["resourceVersion"])
        for obj in doc["objects"]:
            res = resource_for_kind(obj["apiVersion"], obj["kind"])
            if res:
                self._objects[self._key(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
        log.info("loaded %d objects from %s (resourceVersion %d)", len(self._objects), self.path, self._rv)

    def _persist(self) -> None:
        if not self.path:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"resourceVersion": self._rv, "objects": list(self._objects.values())}, indent=1)
        atomic_write(self.path, data.encode())  # 0600: Secrets are stored here

    # ---- reads

    @staticmethod
    def _key(res: Resource, namespace: str | None, name: str) -> Key:
        return (res.group, res.plural, namespace or "" if res.namespaced else "", name)

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def get(self, res: Resource, namespace: str | None, name: str) -> dict | None:
        obj = self._objects.get(self._key(res, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def require(self, res: Resource, namespace: str | None, name: str) -> dict:
        obj = self.get(res, namespace, name)
        if obj is None:
            raise not_found(res, name)
        return obj

    def list(self, res: Resource, namespace: str | None = None, match: Matcher | None = None) -> list[dict]:
        items = [
            copy.deepcopy(o)
            for (g, p, ns, _), o in self._objects.items()
            if g == res.group
            and p == res.plural
            and (namespace is None or ns == namespace)
            and (match is None or match(o))
        ]
        return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    # ---- writes

    def create(
        self,
        res: Resource,
        namespace: str | None,
        body: dict,
        *,
        dry_run: bool = False,
        field_manager: str | None = None,
        operation: str = "Update",
    ) -> dict:
        obj = self._prepare(res, namespace, body)
        name = obj["metadata"]["name"]
        if res.namespaced:
            self._require_namespace(obj["metadata"]["namespace"])
        if self._key(res, namespace, name) in self._objects:
            raise already_exists(res, name)
        meta = obj["metadata"]
        for field in ("resourceVersion", "deletionTimestamp", "managedFields"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        if res.generation:
            meta["generation"] = 1
        if res.status:
            obj["status"] = initial_status(res)
        if (
            res.kind == "Service"
            and self.allocate_cluster_ip
            and isinstance(obj.get("spec"), dict)
            and not obj["spec"].get("clusterIP")
        ):
            taken = {(o.get("spec") or {}).get("clusterIP") for o in self.list(res)}
            ip = self.allocate_cluster_ip({t for t in taken if t})
            obj["spec"]["clusterIP"], obj["spec"]["clusterIPs"] = ip, [ip]
        _record_manager(obj, field_manager, operation, None)
        validate(res, obj, None)
        if dry_run:
            return obj
        return self._commit(res, "ADDED", obj)

    def update(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: dict,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
        operation: str = "Update",
    ) -> dict:
        """Replace an object (PUT semantics); the stored status survives unless subresource == "status"."""
        old = self.require(res, namespace, name)
        new = self._prepare(res, namespace, body)
        if new["metadata"]["name"] != name:
            raise bad_request(
                f"the name of the object ({new['metadata']['name']}) does not match the name on the URL ({name})"
            )
        given_rv = new["metadata"].get("resourceVersion")
        if given_rv and given_rv != old["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status") or {}
        else:
            merged = new
            meta = merged["metadata"]
            for field in ("uid", "creationTimestamp", "generation", "resourceVersion", "managedFields"):
                if field in old["metadata"]:
                    meta[field] = old["metadata"][field]
                else:
                    meta.pop(field, None)
            if res.status:
                merged["status"] = old.get("status", {})
            old_ip = (old.get("spec") or {}).get("clusterIP")
            if (
                res.kind == "Service"
                and old_ip
                and isinstance(merged.get("spec"), dict)
                and not merged["spec"].get("clusterIP")
            ):
                merged["spec"]["clusterIP"], merged["spec"]["clusterIPs"] = old_ip, [old_ip]  # immutable once set
            if res.generation and merged.get("spec") != old.get("spec"):
                meta["generation"] = old["metadata"].get("generation", 1) + 1
        _record_manager(merged, field_manager, operation, subresource)
        validate(res, merged, old)
        if _same(merged, old):
            return old  # a no-op write changes nothing, not even resourceVersion (like the real server)
        if dry_run:
            return merged
        return self._commit(res, "MODIFIED", merged)

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
        force: bool = False,
    ) -> tuple[dict, bool]:
        """Apply a patch; returns (object, created). Apply patches create missing objects."""
        apply = patch_type == "application/apply-patch+yaml"
        old = self.get(res, namespace, name)
        if old is None:
            if not apply or subresource:
                raise not_found(res, name)
            if not isinstance(patch, dict):
                raise bad_request("apply patch must be an object")
            body = copy.deepcopy(patch)
            body.setdefault("metadata", {}).setdefault("name", name)
            if body["metadata"]["name"] != name:
                raise bad_request(
                    f"the name of the object ({body['metadata']['name']}) does not match the name on the URL ({name})"
                )
            return self.create(
                res, namespace, body, dry_run=dry_run, field_manager=field_manager, operation="Apply"
            ), True
        if apply:
            if not isinstance(patch, dict):
                raise bad_request("apply patch must be an object")
            _check_type(res, patch)
        patched = PATCH_TYPES[patch_type](old, patch)
        if not isinstance(patched, dict):
            raise ApiError(422, "Invalid", "patch produced a non-object document")
        patched.setdefault("metadata", {})
        # A resourceVersion in the patch is a precondition; otherwise the patch applies to the latest.
        patched_rv = patched["metadata"].get("resourceVersion")
        if patched_rv and patched_rv != old["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        patched["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self.update(
            res,
            namespace,
            name,
            patched,
            subresource=subresource,
            dry_run=dry_run,
            field_manager=field_manager,
            operation="Apply" if apply else "Update",
        ), False

    def delete(self, res: Resource, namespace: str | None, name: str, *, dry_run: bool = False) -> dict:
        key = self._key(res, namespace, name)
        if key not in self._objects:
            raise not_found(res, name)
        obj = copy.deepcopy(self._objects[key])
        if dry_run:
            return obj
        if res == NAMESPACES:  # immediate cascade instead of the Terminating phase
            for other in RESOURCES:
                if other.namespaced:
                    for child in self.list(other, name):
                        self._drop(other, child)
        return self._drop(res, obj)

    def write_status(self, res: Resource, namespace: str | None, name: str, status: dict) -> dict | None:
        """Set an object's status (used by the lab controller); None when the object is gone."""
        obj = self.get(res, namespace, name)
        if obj is None:
            return None
        if obj.get("status") == status:
            return obj
        obj["status"] = copy.deepcopy(status)
        return self._commit(res, "MODIFIED", obj)

    def _drop(self, res: Resource, obj: dict) -> dict:
        del self._objects[self._key(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])]
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._persist()
        self._emit("DELETED", res, obj)
        return obj

    def _commit(self, res: Resource, event: str, obj: dict) -> dict:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[self._key(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
        self._persist()
        self._emit(event, res, obj)
        return copy.deepcopy(obj)

    def _prepare(self, res: Resource, namespace: str | None, body: Any) -> dict:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        obj = copy.deepcopy(body)
        _check_type(res, obj)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise invalid(res, "", "metadata.name", "Required value: name or generateName is required")
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if res.kind == "Secret" and "stringData" in obj:
            data = obj.setdefault("data", {}) or {}
            for k, v in (obj.pop("stringData") or {}).items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
        apply_defaults(res, obj)
        return obj

    def _require_namespace(self, namespace: str) -> None:
        if self._key(NAMESPACES, None, namespace) not in self._objects:
            raise not_found(NAMESPACES, namespace)

    # ---- watch

    def _emit(self, event: str, res: Resource, obj: dict) -> None:
        snapshot = copy.deepcopy(obj)
        self._history.append((self._rv, event, res, snapshot))
        for w in list(self._watchers):
            if (
                w.res == res
                and (w.namespace is None or w.namespace == obj["metadata"].get("namespace"))
                and w.match(snapshot)
            ):
                w.queue.put_nowait((event, snapshot))
        for listener in self.listeners:
            try:
                listener(event, res, copy.deepcopy(snapshot))
            except Exception:  # a broken listener must not break the API
                log.exception("store listener failed")

    def open_watch(
        self, res: Resource, namespace: str | None, match: Matcher, since: str | None, initial_events: bool = False
    ) -> Watcher:
        """Register a watch; replays history after `since`, or the current objects as ADDED when unset/"0".

        `initial_events` (sendInitialEvents=true, the watch-list protocol) always starts with the current
        objects and ends them with the BOOKMARK that client-go waits for."""
        watcher = Watcher(res, namespace, match, asyncio.Queue())
        if since in (None, "", "0") or initial_events:
            for obj in self.list(res, namespace, match):
                watcher.queue.put_nowait(("ADDED", obj))
            if initial_events:
                watcher.queue.put_nowait(
                    (
                        "BOOKMARK",
                        {
                            "kind": res.kind,
                            "apiVersion": res.api_version,
                            "metadata": {
                                "resourceVersion": self.resource_version,
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    )
                )
        else:
            try:
                start = int(since)
            except ValueError:
                raise bad_request(f"invalid resourceVersion {since!r}") from None
            oldest = self._history[0][0] if self._history else self._rv + 1
            if start < oldest - 1 and start < self._rv:
                raise ApiError(410, "Expired", f"too old resource version: {start} ({oldest - 1})")
            for rv, event, r, obj in self._history:
                if (
                    rv > start
                    and r == res
                    and (namespace is None or obj["metadata"].get("namespace") == namespace)
                    and match(obj)
                ):
                    watcher.queue.put_nowait((event, copy.deepcopy(obj)))
        self._watchers.add(watcher)
        return watcher

    def close_watch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close(self) -> None:
        """End every open watch (server shutdown)."""
        for w in list(self._watchers):
            w.queue.put_nowait(None)


def _same(a: dict, b: dict) -> bool:
    def strip(o: dict) -> dict:
        o = copy.deepcopy(o)
        o["metadata"].pop("resourceVersion", None)
        o["metadata"].pop("managedFields", None)
        return o

    return strip(a) == strip(b)


def _check_type(res: Resource, obj: dict) -> None:
    if obj.get("kind") not in (None, res.kind) or obj.get("apiVersion") not in (None, res.api_version):
        raise bad_request(
            f"the API version in the data ({obj.get('apiVersion')}) and kind ({obj.get('kind')}) do "
            f"not match the endpoint ({res.api_version}, {res.kind})"
        )


def _record_manager(obj: dict, manager: str | None, operation: str, subresource: str | None) -> None:
    if not manager:
        return
    entries = [
        e
        for e in obj["metadata"].get("managedFields") or []
        if (e.get("manager"), e.get("operation"), e.get("subresource")) != (manager, operation, subresource)
    ]
    entry = {
        "manager": manager,
        "operation": operation,
        "apiVersion": obj["apiVersion"],
        "time": now_iso(),
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
    }
    if subresource:
        entry["subresource"] = subresource
    obj["metadata"]["managedFields"] = entries + [entry]


def initial_status(res: Resource) -> dict:
    if res.kind == "Namespace":
        return {"phase": "Active"}
    if res.kind == "Service":
        return {"loadBalancer": {}}
    return {}


def apply_defaults(res: Resource, obj: dict) -> None:
    """The few defaults whose absence would make generation or kubectl output differ from a real server."""
    spec = obj.get("spec")
    if res.kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    if res.kind in ("Deployment", "StatefulSet") and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if res.kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
            )
    if res.kind == "Secret":
        obj.setdefault("type", "Opaque")
    if res.kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")


def validate(res: Resource, obj: dict, old: dict | None) -> None:
    """The validation a real server would do that the deploy path can trip over."""
    meta = obj["metadata"]
    name = meta["name"]
    pattern = DNS1123_LABEL if res.kind in ("Namespace", "Service", "Deployment", "StatefulSet") else DNS1123_SUBDOMAIN
    if len(name) > 253 or not pattern.match(name):
        raise invalid(
            res,
            name,
            "metadata.name",
            f'Invalid value: "{name}": a lowercase RFC 1123 name must consist '
            "of lower case alphanumeric characters, '-' or '.'",
        )
    for field in ("labels", "annotations"):
        values = meta.get(field)
        if values is not None and (
            not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values())
        ):
            raise invalid(res, name, f"metadata.{field}", "Invalid value: values must be strings")
    if res.kind in ("Deployment", "StatefulSet", "Job"):
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            raise invalid(res, name, "spec", "Required value")
        template = spec.get("template") or {}
        containers = (template.get("spec") or {}).get("containers")
        if not containers or not all(isinstance(c, dict) and c.get("name") and c.get("image") for c in containers):
            raise invalid(res, name, "spec.template.spec.containers", "Required value: containers need name and image")
        if res.kind != "Job":
            selector = (spec.get("selector") or {}).get("matchLabels")
            labels = (template.get("metadata") or {}).get("labels") or {}
            if not selector:
                raise invalid(res, name, "spec.selector", "Required value")
            if any(labels.get(k) != v for k, v in selector.items()):
                raise invalid(
                    res,
                    name,
                    "spec.template.metadata.labels",
                    "Invalid value: `selector` does not match template `labels`",
                )
            if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
                raise invalid(res, name, "spec.selector", "Invalid value: field is immutable")


# --------------------------------------------------------------------------- HTTP


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status, dumps=lambda d: json.dumps(d, separators=(",", ":")))


def _error(exc: ApiError) -> web.Response:
    return _json(exc.status(), exc.code)


def api_resource_list(group: str, version: str) -> dict:
    resources = []
    for res in GROUP_VERSIONS[(group, version)]:
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        entry = {
            "name": res.plural,
            "singularName": res.kind.lower(),
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": verbs,
        }
        if res.short:
            entry["shortNames"] = list(res.short)
        if res.kind in ("Deployment", "StatefulSet", "Job", "Service"):
            entry["categories"] = ["all"]
        resources.append(entry)
        if res.status:
            resources.append(
                {
                    "name": f"{res.plural}/status",
                    "singularName": "",
                    "namespaced": res.namespaced,
                    "kind": res.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if res.kind in ("Deployment", "StatefulSet"):
            resources.append(
                {
                    "name": f"{res.plural}/scale",
                    "singularName": "",
                    "namespaced": True,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }
            )
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def api_group(group: str) -> dict:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for (g, v) in GROUP_VERSIONS if g == group]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


class KubeAPI:
    """The HTTP face of a Store: URL parsing, verbs, content types, watch streaming."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._streams: set[asyncio.Task] = set()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return _error(exc)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path_qs)
            return _error(ApiError(500, "InternalError", f"Internal error occurred: {exc!r}"))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if not parts:
            return _json(
                {
                    "paths": ["/api", "/api/v1", "/apis", "/version", "/healthz", "/readyz", "/livez"]
                    + [f"/apis/{g}/{v}" for g, v in GROUP_VERSIONS if g]
                }
            )
        if parts[0] in ("healthz", "readyz", "livez") and len(parts) == 1:
            return web.Response(text="ok")
        if parts == ["version"]:
            return _json(
                KUBE_VERSION
                | {
                    "gitCommit": "",
                    "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "n/a (python emulator)",
                    "compiler": "python",
                    "platform": "linux/amd64",
                }
            )
        if parts[0] == "api":
            if len(parts) == 1:
                host = request.host
                return _json(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
                    }
                )
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis":
            if len(parts) == 1:
                return _json(
                    {
                        "kind": "APIGroupList",
                        "apiVersion": "v1",
                        "groups": [api_group(g) for g in dict.fromkeys(g for g, _ in GROUP_VERSIONS if g)],
                    }
                )
            if len(parts) == 2:
                if not any(g == parts[1] for g, _ in GROUP_VERSIONS):
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return _json(api_group(parts[1]))
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if (group, version) not in GROUP_VERSIONS:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return _json(api_resource_list(group, version))

        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and find_resource(group, rest[2]):
            namespace, rest = rest[1], rest[2:]
        res = find_resource(group, rest[0])
        if (
            res is None
            or len(rest) > 3
            or (res.namespaced and namespace is None and len(rest) > 1)
            or (not res.namespaced and namespace is not None)
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        scalable = res.kind in ("Deployment", "StatefulSet")
        logs = sub == "log" and res.kind == "Pod"
        if sub is not None and not ((sub == "status" and res.status) or (sub == "scale" and scalable) or logs):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")

        q = request.query
        dry_run = q.get("dryRun") == "All"
        manager = q.get("fieldManager")
        if manager is not None and manager.startswith("-"):
            raise bad_request("fieldManager must not start with '-'")
        if name is None:
            if method == "GET":
                if (q.get("watch") or "").lower() in ("true", "1"):
                    return await self._watch(request, res, namespace)
                return self._list(res, namespace, q)
            if method == "POST" and (namespace is not None or not res.namespaced):
                obj = self.store.create(res, namespace, await _body(request), dry_run=dry_run, field_manager=manager)
                return _json(obj, 201)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if sub == "scale":
            return await self._scale(request, res, namespace, name, dry_run, manager)
        if logs:
            return self._pod_log(request, namespace, name)
        if method == "GET":
            return _json(self.store.require(res, namespace, name))
        if method == "PUT":
            obj = self.store.update(
                res, namespace, name, await _body(request), subresource=sub, dry_run=dry_run, field_manager=manager
            )
            return _json(obj)
        if method == "PATCH":
            ctype, patch = await _patch_body(request, manager)
            obj, created = self.store.patch(
                res,
                namespace,
                name,
                ctype,
                patch,
                subresource=sub,
                dry_run=dry_run,
                field_manager=manager,
                force=(q.get("force") or "").lower() == "true",
            )
            return _json(obj, 201 if created else 200)
        if method == "DELETE" and sub is None:
            obj = self.store.delete(res, namespace, name, dry_run=dry_run)
            if res == NAMESPACES:
                return _json(obj)
            return _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {"name": name, "group": res.group, "kind": res.plural, "uid": obj["metadata"]["uid"]},
                }
            )
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    async def _scale(
        self, request: web.Request, res: Resource, namespace: str | None, name: str, dry_run: bool, manager: str | None
    ) -> web.Response:
        """The autoscaling/v1 Scale subresource (kubectl scale), backed by spec.replicas."""
        obj = self.store.require(res, namespace, name)
        if request.method == "GET":
            return _json(scale_of(obj))
        if request.method == "PUT":
            body = await _body(request)
        elif request.method == "PATCH":
            ctype, patch = await _patch_body(request, manager)
            if ctype == "application/apply-patch+yaml":
                raise ApiError(415, "UnsupportedMediaType", "apply is not supported on scale in the lab")
            body = PATCH_TYPES[ctype](scale_of(obj), patch)
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        replicas = ((body or {}).get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid(res, name, "spec.replicas", "Invalid value: must be a non-negative integer")
        rv = ((body or {}).get("metadata") or {}).get("resourceVersion")
        if rv and rv != obj["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        obj["spec"]["replicas"] = replicas
        return _json(scale_of(self.store.update(res, namespace, name, obj, dry_run=dry_run, field_manager=manager)))

    def _pod_log(self, request: web.Request, namespace: str | None, name: str) -> web.Response:
        """GET pods/NAME/log (`tailLines`, `previous`), served from the controller's container logs."""
        if request.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        pod = self.store.require(find_resource("", "pods"), namespace, name)  # type: ignore[arg-type]
        tail = request.query.get("tailLines")
        if tail is not None and not tail.isdigit():
            raise bad_request("tailLines must be a non-negative integer")
        previous = request.query.get("previous", "false").lower() in ("true", "1")
        reader = self.store.pod_log
        text = reader(namespace or "", name, int(tail) if tail is not None else None, previous) if reader else None
        if text is None:
            containers = (pod.get("spec") or {}).get("containers") or [{}]
            if previous:  # what the API server answers when there was no restart
                raise bad_request(
                    f'previous terminated container "{containers[0].get("name")}" in pod "{name}" not found'
                )
            raise bad_request(f'container "{containers[0].get("name")}" in pod "{name}" has no logs')
        return web.Response(text=text, content_type="text/plain")

    def _list(self, res: Resource, namespace: str | None, q) -> web.Response:
        match = _matcher(q)
        items = self.store.list(res, namespace, match)
        return _json(
            {
                "kind": f"{res.kind}List",
                "apiVersion": res.api_version,
                "metadata": {"resourceVersion": self.store.resource_version},
                "items": items,
            }
        )

    async def _watch(self, request: web.Request, res: Resource, namespace: str | None) -> web.StreamResponse:
        q = request.query
        match = _matcher(q)
        try:
            timeout = float(q.get("timeoutSeconds") or 1800)
        except ValueError:
            raise bad_request("invalid timeoutSeconds") from None
        try:
            watcher = self.store.open_watch(
                res,
                namespace,
                match,
                q.get("resourceVersion"),
                initial_events=(q.get("sendInitialEvents") or "").lower() == "true",
            )
        except ApiError as exc:
            if exc.code != 410:
                raise
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(json.dumps({"type": "ERROR", "object": exc.status()}).encode() + b"\n")
            return resp
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while (remaining := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                if item is None:  # server shutdown
                    break
                event, obj = item
                await resp.write(json.dumps({"type": event, "object": obj}, separators=(",", ":")).encode() + b"\n")
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self.store.close_watch(watcher)
        return resp


def _matcher(q) -> Matcher:
    labels = parse_label_selector(q.get("labelSelector"))
    fields = parse_field_selector(q.get("fieldSelector"))
    return lambda o: labels(o["metadata"].get("labels") or {}) and fields(o)


def scale_of(obj: dict) -> dict:
    meta = obj["metadata"]
    selector = ",".join(f"{k}={v}" for k, v in ((obj["spec"].get("selector") or {}).get("matchLabels") or {}).items())
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
        },
        "spec": {"replicas": obj["spec"].get("replicas", 1)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": selector},
    }


async def _patch_body(request: web.Request, manager: str | None) -> tuple[str, Any]:
    ctype = request.content_type
    if ctype not in PATCH_TYPES:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - "
            f"accepted media types include: {', '.join(PATCH_TYPES)}",
        )
    if ctype == "application/apply-patch+yaml" and not manager:
        raise ApiError(
            422,
            "Invalid",
            'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
        )
    raw = await request.text()
    try:
        return ctype, (yaml.safe_load(raw) if ctype.endswith("yaml") else json.loads(raw))
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"error decoding patch: {exc}") from None


async def _body(request: web.Request) -> Any:
    raw = await request.text()
    try:
        if request.content_type in ("application/yaml", "application/x-yaml"):
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"error decoding request body: {exc}") from None


# --------------------------------------------------------------------------- server


async def start_server(store: Store, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `store` on host:port (0 = any free port); returns the runner and the bound port."""
    runner = web.AppRunner(KubeAPI(store).app(), access_log=logging.getLogger("aiohttp.access"), shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, bound


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m unidesk_lab.kubeapi", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6443, help="0 picks a free port (logged)")
    p.add_argument("--data", required=True, type=Path, help="state directory (objects.json, container logs)")
    p.add_argument("--containerd-socket", help="containerd socket the controller runs Deployments on")
    p.add_argument("--containerd-namespace", default="k8s.io")
    p.add_argument("--ctr", default="ctr", help="ctr binary")
    p.add_argument("--no-controller", action="store_true", help="serve the API only; run no containers")
    p.add_argument("--pod-cidr", help="run each pod in its own network namespace on this range (unidesk_lab.podnet)")
    p.add_argument("--service-cidr", help="ClusterIP range (with --pod-cidr)")
    p.add_argument("--cni-path", default="/usr/lib/cni", help="CNI plugin directory")
    p.add_argument("--host-root", type=Path, help="the node's lab filesystem root (hostPath volumes live below it)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--access-log", action="store_true", help="log every request")
    args = p.parse_args(argv)
    if not args.no_controller and not args.containerd_socket:
        p.error("--containerd-socket is required unless --no-controller is given")
    if bool(args.pod_cidr) != bool(args.service_cidr):
        p.error("--pod-cidr and --service-cidr go together")
    return args


async def run(args: argparse.Namespace) -> None:
    args.data.mkdir(parents=True, exist_ok=True)
    store = Store(args.data)
    controller = None
    network = None
    if args.pod_cidr:
        from unidesk_lab.podnet import PodNetwork

        network = PodNetwork(args.pod_cidr, args.service_cidr, args.data, cni_path=args.cni_path)
        store.allocate_cluster_ip = network.allocate
    if not args.no_controller:
        from unidesk_lab.kubecontroller import LabController

        controller = LabController(
            store,
            args.containerd_socket,
            args.containerd_namespace,
            ctr=args.ctr,
            log_dir=args.data / "logs",
            network=network,
            data_dir=args.data,
            host_root=args.host_root,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner, port = await start_server(store, args.host, args.port)
    log.info(
        "Kubernetes API emulator serving on http://%s:%d (data %s, controller %s)",
        args.host,
        port,
        args.data,
        "off" if controller is None else f"on {args.containerd_socket} ns {args.containerd_namespace}",
    )
    try:
        if controller is not None:
            await controller.start()
        await stop.wait()
        log.info("shutting down")
    finally:
        if controller is not None:
            await controller.close()
        store.close()
        await runner.cleanup()
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.INFO if args.access_log else logging.WARNING)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy, so the controller shares its classes and tables.
    from unidesk_lab import kubeapi

    sys.exit(kubeapi.main())
