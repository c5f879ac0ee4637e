"""`unidesk dev-env validate`: static guardrails for the D601 dev environment manifests.
`unidesk dev-env prewarm-images`: a job importing the foundation images into native k3s containerd.

The spec lets each dev phase create only named objects in `unidesk-dev`, with named content. This
reads the YAML without any cluster and reports every object that breaks a rule (`devrules`), so a
bad manifest is caught before anything is applied.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from unidesk_tui.devrules import CODE_QUEUE, CORE, FOUNDATION, check_objects
from unidesk_tui.errors import ErrorCode, ExitCode, Problem

DEV_DIR = "src/components/microservices/k3sctl-adapter/k3s/dev"


class ManifestReport:
    """One dev manifest's validation (a plain class: `unidesk --help` imports this module and
    starts without dataclasses)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.objects: list[str] = []
        self.problems: list[Problem] = []
        self.kubectl: dict | None = None  # the client dry-run's outcome, when asked for

    def to_dict(self) -> dict:
        out = {
            "path": self.path,
            "objects": self.objects,
            "ok": not self.problems,
            "problems": [p.to_dict() for p in self.problems],
        }
        if self.kubectl is not None:
            out["kubectlDryRun"] = self.kubectl
        return out


def validate_manifest(path: Path) -> ManifestReport:
    import yaml  # only `dev-env validate` parses YAML; the CLI's other commands start without it

    report = ManifestReport(str(path))
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except FileNotFoundError:
        report.problems.append(Problem(ErrorCode.MANIFEST_NOT_FOUND, f"{path}: not found"))
        return report
    except (OSError, UnicodeDecodeError) as exc:
        report.problems.append(
            Problem(
                ErrorCode.DEV_MANIFEST_INVALID,
                f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc.__class__.__name__}",
            )
        )
        return report
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        report.problems.append(Problem(ErrorCode.DEV_MANIFEST_INVALID, f"{path.name}: invalid YAML{where}"))
        return report
    report.objects, report.problems = check_objects(docs, path.name)
    return report


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
        raise UnideskError.of(
            ErrorCode.CONFIG_INVALID,
            "--kubectl-dry-run needs environments.dev.target with a native k3s node (targets[].k3s)",
            path="environments.dev",
        )
    target = catalog.target(dev.target)
    async with TargetPool(catalog) as pool:
        session = await pool.session(target.id)
        for report in reports:
            if report.problems:
                continue
            argv = ["kubectl", "apply", "--dry-run=client", "--validate=false", "-o", "name", "-f", "-"]
            res = await session.run(
                argv,
                env={"KUBECONFIG": target.k3s.kubeconfig},
                input=Path(report.path).read_text(encoding="utf-8"),
                timeout=120,
            )
            report.kubectl = {"target": target.id, "ok": res.ok, "objects": res.stdout.split() if res.ok else []}
            if not res.ok:
                report.problems.append(
                    Problem(
                        ErrorCode.DEV_MANIFEST_INVALID,
                        f"{Path(report.path).name}: kubectl client dry-run on {target.id} failed: {res.tail(400)}",
                    )
                )


def _run(args: argparse.Namespace, ws) -> int:
    import asyncio

    from unidesk_tui.cli import emit
    from unidesk_tui.errors import UnideskError

    paths = (
        [Path(p) if Path(p).is_absolute() else ws.root / p for p in args.manifest]
        if args.manifest
        else default_manifests(ws.root)
    )
    reports = [validate_manifest(p) for p in paths]
    errors: list[dict] = []
    if args.kubectl_dry_run:
        try:
            asyncio.run(_kubectl_dry_run(ws.catalog(), reports))
        except UnideskError as exc:
            errors += [p.to_dict() for p in exc.problems]
    errors = [p.to_dict() for r in reports for p in r.problems] + errors
    emit(
        {
            "ok": not errors,
            "command": "dev-env validate",
            "manifests": [r.to_dict() for r in reports],
            "errors": errors,
            "warnings": [],
        }
    )
    return ExitCode.OK if not errors else ExitCode.ERROR


PREWARM_COMMAND: Literal["dev-env prewarm-images"] = "dev-env prewarm-images"


def prewarm_images(ws) -> dict:
    """Start the asynchronous prewarm job on environments.dev.target; {"ok", "jobId", …} or errors.

    Steps per foundation image (executors/prewarm.py): present in the target's Docker, `docker save`
    + `ctr images import`, listed by containerd. The job takes the dev lock of its one task item.
    """
    from unidesk_tui import apply
    from unidesk_tui.devrules import FOUNDATION_IMAGES
    from unidesk_tui.devrules import PREWARM_MODE as MODE
    from unidesk_tui.devrules import PREWARM_TASK as TASK_ID
    from unidesk_tui.documents import FileSourceDoc, PlanItem
    from unidesk_tui.engine import step_records
    from unidesk_tui.errors import UnideskError
    from unidesk_tui.model import Action, Environment, JobStatus

    doc: dict = {
        "ok": False,
        "command": PREWARM_COMMAND,
        "jobId": None,
        "images": list(FOUNDATION_IMAGES),
        "errors": [],
    }
    try:
        catalog = ws.catalog()
        dev = catalog.environments.get("dev")
        if dev is None:
            raise UnideskError.of(
                ErrorCode.CONFIG_INVALID,
                "config.json has no environments.dev: prewarm-images needs its target",
                path="environments.dev",
            )
        target = catalog.target(dev.target)
        if target.k3s is None:
            raise UnideskError.of(
                ErrorCode.CONFIG_INVALID,
                f"target {target.id} (environments.dev.target) declares no native k3s node (targets[].k3s)",
                path="environments.dev.target",
            )
        doc["target"] = target.id
        item = PlanItem(
            id=TASK_ID,
            mode=MODE,
            target=target.id,
            action=Action.DEPLOY,
            reason=f"import {', '.join(FOUNDATION_IMAGES)} from Docker into {target.k3s.containerdSocket}",
        )
        records, problems = step_records(catalog, [item], Environment.DEV)
        if problems:
            raise UnideskError(*problems)
        doc["jobId"], takeovers = apply.launch(
            ws,
            catalog,
            [item],
            records,
            lock_env=Environment.DEV,
            source=FileSourceDoc(path=str(ws.config_path)),
            command=PREWARM_COMMAND,
        )
        if takeovers:
            doc["warnings"] = list(doc.get("warnings", [])) + takeovers
    except UnideskError as exc:
        doc["errors"] = [p.to_dict() for p in exc.problems]
        return doc
    doc["ok"], doc["status"] = True, JobStatus.QUEUED
    return doc


def _prewarm(args: argparse.Namespace, ws) -> int:
    from unidesk_tui.cli import emit

    doc = prewarm_images(ws)
    if doc["ok"] and args.wait:
        from unidesk_tui.apply import wait_job
        from unidesk_tui.model import JobStatus

        record = wait_job(ws.state_dir, doc["jobId"])
        errors = [e.model_dump(exclude_none=True) for e in record.result.errors] if record.result else []
        doc.update(ok=record.status == JobStatus.SUCCEEDED, status=record.status, errors=errors)
    emit(doc)
    return ExitCode.OK if doc["ok"] else ExitCode.ERROR


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dev-env", help="D601 dev environment guardrails")
    dsub = p.add_subparsers(dest="devenv_command", required=True, parser_class=type(p))
    v = dsub.add_parser("validate", help="static validation of the dev manifests (no cluster needed)")
    v.add_argument(
        "--manifest", action="append", metavar="PATH", help="a manifest (repeatable; default: the three dev manifests)"
    )
    v.add_argument(
        "--kubectl-dry-run",
        action="store_true",
        help="also run kubectl's client dry-run on the dev target with its native kubeconfig",
    )
    v.set_defaults(handler=_run, command_name="dev-env validate")
    w = dsub.add_parser(
        "prewarm-images", help="job: import the foundation images from the dev target's Docker into its k3s containerd"
    )
    w.add_argument("--wait", action="store_true", help="follow the job to its end; exit 0 only if it succeeded")
    w.set_defaults(handler=_prewarm, command_name=PREWARM_COMMAND)
