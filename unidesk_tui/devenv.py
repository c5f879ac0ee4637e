"""`unidesk dev-env validate`: static guardrails for the D601 dev environment manifests.
`unidesk dev-env prewarm-images`: a job importing the foundation images into native k3s containerd.

The spec lets each dev phase create only named objects in `unidesk-dev`. This reads the YAML
without any cluster and reports every object that breaks a rule, so a bad manifest is caught
before anything is applied.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from unidesk_tui.errors import ErrorCode, ExitCode, Problem

DEV_NAMESPACE = "unidesk-dev"
DEV_DIR = "src/components/microservices/k3sctl-adapter/k3s/dev"
FOUNDATION, CORE, CODE_QUEUE = "unidesk-dev-foundation.k8s.yaml", "unidesk-dev-core.k8s.yaml", "unidesk-dev-code-queue.k8s.yaml"

# What each phase's manifest may create: (kind, name) pairs; any other object is a violation.
ALLOWED: dict[str, set[tuple[str, str]]] = {
    FOUNDATION: {
        ("Namespace", DEV_NAMESPACE), ("Secret", "unidesk-dev-runtime-secrets"),
        ("ConfigMap", "unidesk-dev-runtime-config"), ("ConfigMap", "unidesk-dev-db-guard"),
        ("StatefulSet", "postgres-dev"), ("Service", "postgres-dev"), ("Job", "unidesk-dev-db-migrate"),
    },
    CORE: {(k, n) for n in ("backend-core-dev", "frontend-dev") for k in ("Deployment", "Service")},
    CODE_QUEUE: {
        (k, n)
        for n in ("code-queue-scheduler-dev", "code-queue-read-dev", "code-queue-write-dev", "d601-dev-provider-egress-proxy")
        for k in ("Deployment", "Service")
    },
}
# Quota and default limits are part of the foundation whatever they are called.
ANY_NAME_KINDS = {FOUNDATION: {"ResourceQuota", "LimitRange"}}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}
PROD_MARKERS = re.compile(r"d601-tcp-egress-gateway|postgres\.unidesk\.svc|/unidesk(?![_-]dev)\b")


@dataclass
class ManifestReport:
    path: str
    objects: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    kubectl: dict | None = None  # the client dry-run's outcome, when asked for

    def to_dict(self) -> dict:
        out = {"path": self.path, "objects": self.objects, "ok": not self.problems, "problems": [p.to_dict() for p in self.problems]}
        if self.kubectl is not None:
            out["kubectlDryRun"] = self.kubectl
        return out


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    return list(pod.get("containers") or []) + list(pod.get("initContainers") or [])


def _env(container: dict) -> dict[str, str]:
    return {e.get("name"): str(e.get("value", "")) for e in container.get("env") or [] if isinstance(e, dict)}


def _memory_bytes(value: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    return float(m.group(1)) * units.get(m.group(2), 1) if m else 0.0


def validate_manifest(path: Path) -> ManifestReport:
    report = ManifestReport(str(path))

    def bad(where: str, message: str) -> None:
        report.problems.append(Problem(ErrorCode.DEV_MANIFEST_INVALID, f"{path.name}: {where}: {message}", path=where))

    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except FileNotFoundError:
        report.problems.append(Problem(ErrorCode.MANIFEST_NOT_FOUND, f"{path}: not found"))
        return report
    except (OSError, UnicodeDecodeError) as exc:
        report.problems.append(Problem(ErrorCode.DEV_MANIFEST_INVALID, f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc.__class__.__name__}"))
        return report
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        report.problems.append(Problem(ErrorCode.DEV_MANIFEST_INVALID, f"{path.name}: invalid YAML{where}"))
        return report
    allowed = ALLOWED.get(path.name)
    for index, obj in enumerate(docs):
        if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
            bad(f"[{index}]", "not a Kubernetes object")
            continue
        try:
            _check_object(obj, allowed, path, report, bad)
        except (AttributeError, TypeError, ValueError):
            # A field of the wrong shape (e.g. `spec: [...]`): the object is not valid Kubernetes.
            bad(f"[{index}] {obj['kind']}", "malformed object (a field has the wrong type)")
    return report


def _check_object(obj: dict, allowed: set[tuple[str, str]] | None, path: Path, report: ManifestReport, bad) -> None:
    """Every rule for one object; `bad(where, message)` records a violation."""
    kind, meta = obj["kind"], obj.get("metadata") or {}
    name, ns = meta.get("name", "?"), meta.get("namespace")
    where = f"{kind}/{name}"
    report.objects.append(where)
    if kind == "Namespace":
        if name != DEV_NAMESPACE:
            bad(where, f"only the {DEV_NAMESPACE} namespace may be created")
    elif ns != DEV_NAMESPACE:
        bad(where, f"namespace {ns!r}: dev manifests may create objects only in {DEV_NAMESPACE}")
    if allowed is not None and (kind, name) not in allowed and kind not in ANY_NAME_KINDS.get(path.name, set()):
        bad(where, f"not one of the objects {path.name} may create")
    if kind == "Service" and (obj.get("spec") or {}).get("type") in ("NodePort", "LoadBalancer"):
        bad(where, "dev services must be ClusterIP (no NodePort/LoadBalancer)")
    text = yaml.safe_dump(obj)
    if PROD_MARKERS.search(text):
        bad(where, "references a production route or database")
    if kind in WORKLOAD_KINDS:
        for c in _containers(obj):
            cname = c.get("name", "?")
            limits = (c.get("resources") or {}).get("limits") or {}
            if "cpu" not in limits or "memory" not in limits:
                bad(f"{where}/{cname}", "every dev container needs CPU and memory limits (the LimitRange default would break the quota)")
            if any("hostPort" in p for p in c.get("ports") or []):
                bad(f"{where}/{cname}", "hostPort is not allowed")
            env = _env(c)
            if "DATABASE_URL" in env and "unidesk_dev" not in env["DATABASE_URL"]:
                bad(f"{where}/{cname}", "DATABASE_URL must point at the unidesk_dev database")
            if name == "frontend-dev" and env.get("CORE_INTERNAL_URL") != "http://backend-core-dev.unidesk-dev.svc.cluster.local:8080":
                bad(f"{where}/{cname}", "frontend-dev must set CORE_INTERNAL_URL to backend-core-dev in unidesk-dev")
            if name == "code-queue-scheduler-dev":
                if env.get("CODE_QUEUE_MAIN_PROVIDER_ID") != "D601-dev":
                    bad(f"{where}/{cname}", "the dev scheduler must use CODE_QUEUE_MAIN_PROVIDER_ID=D601-dev")
                if _memory_bytes(limits.get("memory", "0")) != 5 * 2**30:
                    bad(f"{where}/{cname}", "the dev scheduler needs an explicit 5Gi memory limit")
    if kind == "StatefulSet" and name == "postgres-dev":
        claims = (obj.get("spec") or {}).get("volumeClaimTemplates") or []
        sizes = [((c.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage") for c in claims]
        if sizes != ["5Gi"]:
            bad(where, f"postgres-dev needs one 5Gi volume claim, has {sizes}")


def default_manifests(workspace: Path) -> list[Path]:
    return [workspace / DEV_DIR / name for name in (FOUNDATION, CORE, CODE_QUEUE)]


async def _kubectl_dry_run(catalog, reports: list[ManifestReport]) -> None:
    """`kubectl apply --dry-run=client` of each statically valid manifest on the dev target.

    It runs on the node with the node's native kubeconfig (never the operator's default context,
    which may point elsewhere); the manifest travels on stdin, so nothing is written there.
    """
    from unidesk_tui.errors import UnideskError
    from unidesk_tui.targets import TargetPool

    dev = catalog.environments.get("dev")
    if dev is None or catalog.target(dev.target).k3s is None:
        raise UnideskError.of(ErrorCode.CONFIG_INVALID, "--kubectl-dry-run needs environments.dev.target with a native k3s node (targets[].k3s)", path="environments.dev")
    target = catalog.target(dev.target)
    async with TargetPool(catalog) as pool:
        session = await pool.session(target.id)
        for report in reports:
            if report.problems:
                continue
            argv = ["kubectl", "apply", "--dry-run=client", "--validate=false", "-o", "name", "-f", "-"]
            res = await session.run(argv, env={"KUBECONFIG": target.k3s.kubeconfig}, input=Path(report.path).read_text(encoding="utf-8"), timeout=120)
            report.kubectl = {"target": target.id, "ok": res.ok, "objects": res.stdout.split() if res.ok else []}
            if not res.ok:
                report.problems.append(Problem(ErrorCode.DEV_MANIFEST_INVALID, f"{Path(report.path).name}: kubectl client dry-run on {target.id} failed: {res.tail(400)}"))


def _run(args: argparse.Namespace, ws) -> int:
    import asyncio

    from unidesk_tui.cli import emit
    from unidesk_tui.errors import UnideskError

    paths = [Path(p) if Path(p).is_absolute() else ws.root / p for p in args.manifest] if args.manifest else default_manifests(ws.root)
    reports = [validate_manifest(p) for p in paths]
    errors: list[dict] = []
    if args.kubectl_dry_run:
        try:
            asyncio.run(_kubectl_dry_run(ws.catalog(), reports))
        except UnideskError as exc:
            errors += [p.to_dict() for p in exc.problems]
    errors = [p.to_dict() for r in reports for p in r.problems] + errors
    emit({"ok": not errors, "command": "dev-env validate", "manifests": [r.to_dict() for r in reports], "errors": errors, "warnings": []})
    return ExitCode.OK if not errors else ExitCode.ERROR


PREWARM_COMMAND = "dev-env prewarm-images"


def prewarm_images(ws) -> dict:
    """Start the asynchronous prewarm job on environments.dev.target; {"ok", "jobId", …} or errors.

    Steps per foundation image (executors/prewarm.py): present in the target's Docker, `docker save`
    + `ctr images import`, listed by containerd. The job takes the dev lock of its one task item.
    """
    from executors.prewarm import FOUNDATION_IMAGES, MODE, TASK_ID
    from unidesk_tui import apply
    from unidesk_tui.documents import FileSourceDoc, PlanItem, StepRecord
    from unidesk_tui.errors import UnideskError
    from unidesk_tui.plan import DesiredService
    from unidesk_tui.worker import executor

    doc: dict = {"ok": False, "command": PREWARM_COMMAND, "jobId": None, "images": list(FOUNDATION_IMAGES), "errors": []}
    try:
        catalog = ws.catalog()
        dev = catalog.environments.get("dev")
        if dev is None:
            raise UnideskError.of(ErrorCode.CONFIG_INVALID, "config.json has no environments.dev: prewarm-images needs its target", path="environments.dev")
        target = catalog.target(dev.target)
        if target.k3s is None:
            raise UnideskError.of(ErrorCode.CONFIG_INVALID, f"target {target.id} (environments.dev.target) declares no native k3s node (targets[].k3s)", path="environments.dev.target")
        doc["target"] = target.id
        item = PlanItem(id=TASK_ID, mode=MODE, target=target.id, action="deploy",
                        reason=f"import {', '.join(FOUNDATION_IMAGES)} from Docker into {target.k3s.containerdSocket}")
        steps = executor(MODE).steps(DesiredService(TASK_ID, "", "", None, MODE, target.id))
        records = [StepRecord(service=TASK_ID, name=s.name, readOnly=s.read_only) for s in steps]
        doc["jobId"], takeovers = apply.launch(ws, catalog, [item], records, lock_env="dev", source=FileSourceDoc(path=str(ws.config_path)),
                                               command=PREWARM_COMMAND)
        if takeovers:
            doc["warnings"] = list(doc.get("warnings", [])) + takeovers
    except UnideskError as exc:
        doc["errors"] = [p.to_dict() for p in exc.problems]
        return doc
    doc["ok"], doc["status"] = True, "queued"
    return doc


def _prewarm(args: argparse.Namespace, ws) -> int:
    from unidesk_tui.cli import emit

    doc = prewarm_images(ws)
    if doc["ok"] and args.wait:
        from unidesk_tui.apply import wait_job

        record = wait_job(ws.state_dir, doc["jobId"])
        errors = [e.model_dump(exclude_none=True) for e in record.result.errors] if record.result else []
        doc.update(ok=record.status == "succeeded", status=record.status, errors=errors)
    emit(doc)
    return ExitCode.OK if doc["ok"] else ExitCode.ERROR


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dev-env", help="D601 dev environment guardrails")
    dsub = p.add_subparsers(dest="devenv_command", required=True, parser_class=type(p))
    v = dsub.add_parser("validate", help="static validation of the dev manifests (no cluster needed)")
    v.add_argument("--manifest", action="append", metavar="PATH", help="a manifest (repeatable; default: the three dev manifests)")
    v.add_argument("--kubectl-dry-run", action="store_true", help="also run kubectl's client dry-run on the dev target with its native kubeconfig")
    v.set_defaults(handler=_run, command_name="dev-env validate")
    w = dsub.add_parser("prewarm-images", help="job: import the foundation images from the dev target's Docker into its k3s containerd")
    w.add_argument("--wait", action="store_true", help="follow the job to its end; exit 0 only if it succeeded")
    w.set_defaults(handler=_prewarm, command_name=PREWARM_COMMAND)
