"""The D601 dev environment's guardrails, as named rules over parsed Kubernetes objects.

Pure: no files, no cluster. `dev-env validate` runs them on whole manifests; an environment apply's
`validate` step runs them on the narrowed, rendered objects before anything is applied. Each
violation is a `dev_manifest_invalid` problem naming the object (`Kind/name[/container]`) and the
rule id, so a refusal says exactly what broke which guardrail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from unidesk_tui.errors import ErrorCode, Problem

DEV_NAMESPACE = "unidesk-dev"
# `dev-env prewarm-images`: the job's deployment mode (executors/registry.py), its one task item
# (also its lock name) and the foundation images it imports into D601's k3s containerd.
PREWARM_MODE = "dev-env-prewarm-images"
PREWARM_TASK = "dev-foundation-images"
FOUNDATION_IMAGES: tuple[str, ...] = ("postgres:16-alpine", "rancher/mirrored-library-busybox:1.36.1")
FOUNDATION, CORE, CODE_QUEUE = (
    "unidesk-dev-foundation.k8s.yaml",
    "unidesk-dev-core.k8s.yaml",
    "unidesk-dev-code-queue.k8s.yaml",
)
RUNTIME_CONFIG, RUNTIME_SECRETS = "unidesk-dev-runtime-config", "unidesk-dev-runtime-secrets"
DEV_DB_HOST = "postgres-dev.unidesk-dev.svc.cluster.local"
CORE_URL = "http://backend-core-dev.unidesk-dev.svc.cluster.local:8080"
DEV_LOG_DIR = "/var/log/unidesk-dev"
CODE_QUEUE_STATE = "/home/ubuntu/unidesk-dev-code-queue-deploy/state"
CODE_QUEUE_ROLES = ("code-queue-scheduler-dev", "code-queue-read-dev", "code-queue-write-dev")
SCHEDULER_ENV = {
    "CODE_QUEUE_MAIN_PROVIDER_ID": "D601-dev",
    "CODE_QUEUE_WORKDIR": "/workspace-dev",
    "CODE_QUEUE_REMOTE_WORKDIR": "/home/ubuntu/unidesk-dev-workspace",
}
NOTIFY_OFF = ("false", "0", "off", "no")

# What each phase's manifest may create: (kind, name) pairs; any other object is a violation.
ALLOWED: dict[str, set[tuple[str, str]]] = {
    FOUNDATION: {
        ("Namespace", DEV_NAMESPACE),
        ("Secret", RUNTIME_SECRETS),
        ("ConfigMap", RUNTIME_CONFIG),
        ("ConfigMap", "unidesk-dev-db-guard"),
        ("StatefulSet", "postgres-dev"),
        ("Service", "postgres-dev"),
        ("Job", "unidesk-dev-db-migrate"),
    },
    CORE: {(k, n) for n in ("backend-core-dev", "frontend-dev") for k in ("Deployment", "Service")},
    CODE_QUEUE: {
        (k, n) for n in (*CODE_QUEUE_ROLES, "d601-dev-provider-egress-proxy") for k in ("Deployment", "Service")
    },
}
# Quota and default limits are part of the foundation whatever they are called.
ANY_NAME_KINDS = {FOUNDATION: {"ResourceQuota", "LimitRange"}}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}
PROD_MARKERS = re.compile(r"d601-tcp-egress-gateway|postgres\.unidesk\.svc|/unidesk(?![_-]dev)\b")

# rule id -> what it demands (the docs and `dev-env validate` name rules by these ids)
RULES: dict[str, str] = {
    "namespace": f"objects only in {DEV_NAMESPACE}; only that namespace may be created",
    "allowed-objects": "each phase's manifest creates only its named objects",
    "cluster-ip-only": "Services are ClusterIP (no NodePort/LoadBalancer)",
    "no-host-network": "no hostNetwork and no hostPort",
    "production-reference": "no production route or database (d601-tcp-egress-gateway, postgres.unidesk.svc, /unidesk)",
    "container-limits": "every dev container sets CPU and memory limits",
    "dev-database": f"DATABASE_URL points at {DEV_DB_HOST}…/unidesk_dev",
    "runtime-config": f"backend-core-dev and Code Queue use {RUNTIME_CONFIG} and {RUNTIME_SECRETS}",
    "backend-core-ports": "backend-core-dev serves HTTP on 8080 and provider ingress on 8081 (container and Service)",
    "backend-core-logs": f"backend-core-dev writes logs under {DEV_LOG_DIR} (a volume mounted there)",
    "frontend-core-url": f"frontend-dev sets CORE_INTERNAL_URL={CORE_URL}",
    "code-queue-state": f"Code Queue keeps state and logs under {CODE_QUEUE_STATE} (env and a volume mounted there)",
    "code-queue-port": "Code Queue serves HTTP on 4222, its Services ClusterIP on 4222",
    "scheduler-env": "the dev scheduler uses D601-dev, CODE_QUEUE_WORKDIR=/workspace-dev and "
    "CODE_QUEUE_REMOTE_WORKDIR=/home/ubuntu/unidesk-dev-workspace",
    "notifications-off": "Code Queue dev disables ClaudeQQ notifications (CODE_QUEUE_NOTIFY_CLAUDEQQ=false)",
    "scheduler-memory": "the dev scheduler has an explicit 5Gi memory limit",
    "postgres-volume": "postgres-dev has one 5Gi volume claim",
    "migrate-job": "the migrate Job waits for postgres-dev, runs the db guard, then prepares the tables, with the "
    "dev DATABASE_URL",
}

Bad = Callable[[str, str, str], None]  # (where, rule, message)


def problem(manifest: str, where: str, rule: str, message: str) -> Problem:
    return Problem(ErrorCode.DEV_MANIFEST_INVALID, f"{manifest}: {where}: {message} [rule {rule}]", path=where)


def containers(obj: dict) -> list[dict]:
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    return list(pod.get("containers") or []) + list(pod.get("initContainers") or [])


def env_of(container: dict) -> dict[str, str]:
    return {str(e.get("name")): str(e.get("value", "")) for e in container.get("env") or [] if isinstance(e, dict)}


def _memory_bytes(value: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    return float(m.group(1)) * units.get(m.group(2), 1) if m else 0.0


def _env_from(container: dict) -> set[tuple[str, str]]:
    out = set()
    for src in container.get("envFrom") or []:
        for field in ("configMapRef", "secretRef"):
            if isinstance(src.get(field), dict):
                out.add((field, src[field].get("name")))
    return out


def _mounts(obj: dict, container: dict) -> dict[str, dict]:
    """mountPath -> the volume mounted there."""
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    volumes = {v.get("name"): v for v in pod.get("volumes") or [] if isinstance(v, dict)}
    return {
        str(m.get("mountPath")): volumes.get(m.get("name"), {})
        for m in container.get("volumeMounts") or []
        if isinstance(m, dict)
    }


def _ports(container: dict) -> set[Any]:
    return {p.get("containerPort") for p in container.get("ports") or [] if isinstance(p, dict)}


def _service_ports(obj: dict) -> set[Any]:
    return {p.get("port") for p in (obj.get("spec") or {}).get("ports") or [] if isinstance(p, dict)}


def _dev_db(url: str) -> bool:
    return DEV_DB_HOST in url and url.rstrip("/").endswith("/unidesk_dev")


def check_object(obj: dict, manifest: str, bad: Bad) -> None:
    """Every rule for one object; `bad(where, rule, message)` records a violation."""
    kind, meta = obj["kind"], obj.get("metadata") or {}
    name, ns = meta.get("name", "?"), meta.get("namespace")
    where = f"{kind}/{name}"
    allowed = ALLOWED.get(manifest)
    if kind == "Namespace":
        if name != DEV_NAMESPACE:
            bad(where, "namespace", f"only the {DEV_NAMESPACE} namespace may be created")
    elif ns != DEV_NAMESPACE:
        bad(where, "namespace", f"namespace {ns!r}: dev manifests may create objects only in {DEV_NAMESPACE}")
    if allowed is not None and (kind, name) not in allowed and kind not in ANY_NAME_KINDS.get(manifest, set()):
        bad(where, "allowed-objects", f"not one of the objects {manifest} may create")
    spec = obj.get("spec") or {}
    if kind == "Service":
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            bad(where, "cluster-ip-only", "dev services must be ClusterIP (no NodePort/LoadBalancer)")
        if name in CODE_QUEUE_ROLES and _service_ports(obj) != {4222}:
            bad(
                where, "code-queue-port", f"Code Queue dev Services expose 4222 only, not {sorted(_service_ports(obj))}"
            )
        if name == "backend-core-dev" and not {8080, 8081} <= _service_ports(obj):
            bad(
                where,
                "backend-core-ports",
                "the backend-core-dev Service needs ports 8080 (HTTP) and 8081 (provider ingress)",
            )
    import yaml  # (devrules is imported by the CLI's start; YAML is needed only here)

    if PROD_MARKERS.search(yaml.safe_dump(obj)):
        bad(where, "production-reference", "references a production route or database")
    if kind in WORKLOAD_KINDS:
        _check_workload(obj, kind, name, where, bad)


def _check_workload(obj: dict, kind: str, name: str, where: str, bad: Bad) -> None:
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    if pod.get("hostNetwork"):
        bad(where, "no-host-network", "dev pods never use the host network")
    for c in containers(obj):
        at = f"{where}/{c.get('name', '?')}"
        limits = (c.get("resources") or {}).get("limits") or {}
        env = env_of(c)
        if "cpu" not in limits or "memory" not in limits:
            bad(
                at,
                "container-limits",
                "every dev container needs CPU and memory limits (the LimitRange default would break the quota)",
            )
        if any("hostPort" in p for p in c.get("ports") or [] if isinstance(p, dict)):
            bad(at, "no-host-network", "hostPort is not allowed")
        if "DATABASE_URL" in env and not _dev_db(env["DATABASE_URL"]):
            bad(at, "dev-database", f"DATABASE_URL must point at {DEV_DB_HOST}…/unidesk_dev")
        if name == "backend-core-dev" or name in CODE_QUEUE_ROLES:
            refs = _env_from(c)
            if ("configMapRef", RUNTIME_CONFIG) not in refs or ("secretRef", RUNTIME_SECRETS) not in refs:
                bad(at, "runtime-config", f"needs envFrom {RUNTIME_CONFIG} and {RUNTIME_SECRETS}")
            if not _dev_db(env.get("DATABASE_URL", "")):
                bad(at, "dev-database", f"needs DATABASE_URL at {DEV_DB_HOST}…/unidesk_dev")
        if name == "backend-core-dev":
            if not {8080, 8081} <= _ports(c):
                bad(
                    at,
                    "backend-core-ports",
                    "backend-core-dev needs container ports 8080 (HTTP) and 8081 (provider ingress)",
                )
            if DEV_LOG_DIR not in _mounts(obj, c):
                bad(at, "backend-core-logs", f"backend-core-dev needs its log volume mounted at {DEV_LOG_DIR}")
        if name == "frontend-dev" and env.get("CORE_INTERNAL_URL") != CORE_URL:
            bad(at, "frontend-core-url", "frontend-dev must set CORE_INTERNAL_URL to backend-core-dev in unidesk-dev")
        if name in CODE_QUEUE_ROLES:
            _check_code_queue(obj, c, name, at, env, limits, bad)
    if kind == "StatefulSet" and name == "postgres-dev":
        claims = (obj.get("spec") or {}).get("volumeClaimTemplates") or []
        sizes = [((c.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage") for c in claims]
        if sizes != ["5Gi"]:
            bad(where, "postgres-volume", f"postgres-dev needs one 5Gi volume claim, has {sizes}")
    if kind == "Job" and name == "unidesk-dev-db-migrate":
        _check_migrate(obj, where, bad)


def _check_code_queue(obj: dict, c: dict, name: str, at: str, env: dict[str, str], limits: dict, bad: Bad) -> None:
    state_env = [env.get(k, "") for k in ("CODE_QUEUE_STATE_DIR", "CODE_QUEUE_LOG_DIR")]
    mounted = any(p and p.startswith(CODE_QUEUE_STATE) for p in _mounts(obj, c))
    if not all(v.startswith(CODE_QUEUE_STATE) for v in state_env) or not mounted:
        bad(
            at,
            "code-queue-state",
            f"CODE_QUEUE_STATE_DIR and CODE_QUEUE_LOG_DIR under {CODE_QUEUE_STATE}, mounted there",
        )
    if _ports(c) != {4222}:
        bad(at, "code-queue-port", f"Code Queue dev serves on 4222 only, not {sorted(p for p in _ports(c) if p)}")
    if env.get("CODE_QUEUE_NOTIFY_CLAUDEQQ", "").lower() not in NOTIFY_OFF:
        bad(at, "notifications-off", "set CODE_QUEUE_NOTIFY_CLAUDEQQ=false (ClaudeQQ notifications off in dev)")
    if name == "code-queue-scheduler-dev":
        wrong = [k for k, v in SCHEDULER_ENV.items() if env.get(k) != v]
        if wrong:
            bad(at, "scheduler-env", "the dev scheduler needs " + ", ".join(f"{k}={SCHEDULER_ENV[k]}" for k in wrong))
        if _memory_bytes(limits.get("memory", "0")) != 5 * 2**30:
            bad(at, "scheduler-memory", "the dev scheduler needs an explicit 5Gi memory limit")


def _check_migrate(obj: dict, where: str, bad: Bad) -> None:
    text = "\n".join(" ".join(map(str, (c.get("command") or []) + (c.get("args") or []))) for c in containers(obj))
    wait, guard = text.find("postgres-dev"), text.find("guard.sh")
    tables = max(text.find("CREATE TABLE"), text.find("migrate "))
    dev_url = any(_dev_db(env_of(c).get("DATABASE_URL", "")) for c in containers(obj))
    if not (0 <= wait < guard < tables) or not dev_url:
        bad(
            where,
            "migrate-job",
            "the migrate Job must wait for postgres-dev, run guard.sh, then prepare the tables "
            "(CREATE TABLE …), with DATABASE_URL for unidesk_dev",
        )


def check_objects(objs: Iterable[object], manifest: str) -> tuple[list[str], list[Problem]]:
    """(object names, problems) for parsed documents of a manifest named `manifest` (its file name)."""
    names: list[str] = []
    problems: list[Problem] = []

    def bad(where: str, rule: str, message: str) -> None:
        problems.append(problem(manifest, where, rule, message))

    for index, obj in enumerate(objs):
        if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
            problems.append(
                Problem(
                    ErrorCode.DEV_MANIFEST_INVALID, f"{manifest}: [{index}]: not a Kubernetes object", path=f"[{index}]"
                )
            )
            continue
        meta = obj.get("metadata")
        names.append(f"{obj['kind']}/{meta.get('name', '?') if isinstance(meta, dict) else '?'}")
        try:
            check_object(obj, manifest, bad)
        except (AttributeError, TypeError, ValueError):
            # A field of the wrong shape (e.g. `spec: [...]`): the object is not valid Kubernetes.
            problems.append(
                Problem(
                    ErrorCode.DEV_MANIFEST_INVALID,
                    f"{manifest}: [{index}] {obj['kind']}: malformed object (a field has the wrong type)",
                    path=f"[{index}]",
                )
            )
    return names, problems
