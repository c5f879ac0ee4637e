"""`deploy apply`: validate and plan first, then lock, record the job and start a detached worker.

Every coded error (manifest, catalog, commits, environment rules, unsupported services, locks) is
found before anything runs on a target. Environment rules live here, not only in the CLI:
`--env prod` apply is refused, and `--env dev` applies only the catalog's applyEnabled slice.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from unidesk_tui import jobs, k3s_only, locks, plan_binding
from unidesk_tui import launch as launcher
from unidesk_tui.documents import (
    ApplyDocument,
    ErrorItem,
    JobEvent,
    JobRecord,
    PlanItem,
    SavedPlan,
    StepRecord,
    to_errors,
)
from unidesk_tui.engine import step_records
from unidesk_tui.errors import ErrorCode, Problem, UnideskError
from unidesk_tui.isolation import apply_refusal
from unidesk_tui.manifest_source import file_mode_refusal
from unidesk_tui.model import APPLY_ENVIRONMENTS, JOB_TERMINAL, Environment, JobStatus, LiveReader, environment
from unidesk_tui.planning import load_source, run_plan
from unidesk_tui.workspace import Workspace

log = logging.getLogger(__name__)

POLL_S = 0.2


def launch(
    ws: Workspace,
    catalog,
    items: list[PlanItem],
    step_records: list[StepRecord],
    *,
    lock_env: Environment,
    source,
    dry_run: bool = False,
    force: bool = False,
    warnings: Sequence[str] = (),
    command: Literal["deploy apply", "dev-env prewarm-images"] = "deploy apply",
    no_restore: bool = False,
) -> tuple[str, list[str]]:
    """Start the job's worker, which locks and records the job (its plan items, steps and catalog
    snapshot) itself (unidesk_tui/launch.py).

    Shared by `deploy apply` and task commands (dev-env prewarm-images); returns the job id and
    the stale-lock takeovers. Raises UnideskError(locked) when another live job holds a lock,
    (prod_apply_disabled) for prod.
    """
    if lock_env == Environment.PROD:
        raise UnideskError.of(
            ErrorCode.PROD_APPLY_DISABLED,
            f"{command} --env prod is disabled until the production executor and its authorization policy exist",
        )
    ids = [item.id for item in items]
    if not dry_run and (problems := locks.held(ws.state_dir, lock_env, ids)):
        raise UnideskError(*problems)
    job_id = jobs.new_job_id()
    pid = os.getpid()
    record = JobRecord(
        id=job_id,
        command=command,
        status=JobStatus.QUEUED,
        environment=lock_env,
        source=source,
        workspace=str(ws.root),
        dryRun=dry_run,
        force=force,
        noRestore=no_restore,
        services=ids,
        plan=items,
        steps=step_records,
        createdAt=jobs.now_iso(),
        host=jobs.HOST,
        workerPid=pid,
        workerStart=jobs.process_start(pid),
        locks=[] if dry_run else [f"{lock_env}/{s}" for s in ids],
        warnings=list(warnings),
        operator=jobs.current_operator(ws.root),
    )
    who = record.operator
    events = [launcher.Event(text=f"operator={jobs.operator_text(who)} workspace={who.workspace if who else ''}")]
    events += [
        launcher.Event(
            text=f"{i.id}: {i.action} {(i.commit or '')[:12]} on {i.target} ({i.mode}): {i.reason}", service=i.id
        )
        for i in items
    ]
    takeovers = launcher.start(
        ws.state_dir, launcher.Request(job=record, catalog=catalog.model_dump_json(), events=events)
    )
    try:  # the automatic cap (config.json jobs.keepFinished); running jobs are never removed
        jobs.prune(ws.state_dir, keep=catalog.jobs.keepFinished)
    except (OSError, UnideskError) as exc:
        log.warning("pruning finished jobs failed: %s", exc)
    return job_id, takeovers


def _file_mode_refusal(ws: Workspace, file: str | Path | None) -> UnideskError | None:
    """A file declaring dev is refused up front; an unreadable one is left for the plan to report."""
    try:
        return file_mode_refusal(load_source(ws, file, None))
    except UnideskError:
        return None


def apply(
    ws: Workspace,
    *,
    file: str | Path | None = None,
    env: str | None = None,
    services: list[str] | None = None,
    dry_run: bool = False,
    force: bool = False,
    read_live: LiveReader | None = None,
    saved: SavedPlan | None = None,
    no_restore: bool = False,
) -> ApplyDocument:
    """Plan, lock, record and start the job. Coded failures come back as `errors`, never raised.

    With `saved` (a saved plan: `deploy plan --out`, or the console's confirmation) the request is
    the plan's own, and the job starts only when a fresh plan still rests on the same facts;
    otherwise `plan_stale`, naming each difference, and nothing runs.
    """
    doc = ApplyDocument(ok=False, dryRun=dry_run)
    if saved is not None:
        file, env, services, force = saved.request.file, saved.request.env, saved.request.services, saved.request.force
    if env == "prod":
        doc.errors = [
            ErrorItem(
                code=ErrorCode.PROD_APPLY_DISABLED,
                message="deploy apply --env prod is disabled until the production executor and its authorization "
                "policy exist; use deploy plan --env prod",
            )
        ]
        return doc
    if env is not None and env not in APPLY_ENVIRONMENTS:
        doc.errors = [ErrorItem(code=ErrorCode.USAGE, message=f"unknown environment {env!r}; apply supports --env dev")]
        return doc

    if env is None and (refusal := _file_mode_refusal(ws, file)) is not None:
        doc.errors = to_errors(refusal.problems)  # before any fetch or live read
        return doc
    lock_env = environment(env)
    gate = None if dry_run else (lambda ids: locks.held(ws.state_dir, lock_env, ids))
    run = run_plan(ws, "plan", file=file, env=env, services=services, force=force, read_live=read_live, gate=gate)
    plan = run.document
    doc.source, doc.environment, doc.services, doc.warnings = (
        plan.source,
        plan.environment,
        plan.services,
        list(plan.warnings),
    )
    refusal = file_mode_refusal(run.loaded) if run.loaded is not None else None
    if refusal is not None:  # before the plan's other errors: it says which command to run instead
        doc.errors = to_errors(refusal.problems) + [e for e in plan.errors if e.code != ErrorCode.ENVIRONMENT_MISMATCH]
        return doc
    if plan.errors or run.catalog is None:
        doc.errors = plan.errors
        return doc
    if saved is not None:
        try:
            plan_binding.check(saved, plan, run.catalog, ws.root)
        except UnideskError as exc:
            doc.errors = to_errors(exc.problems)
            return doc
    problems: list[Problem] = []
    if env:
        # The plan's applyEnabled comes from the same refusal (isolation.apply_refusal); the engine
        # and the executors' step lists enforce isolation again, whichever executor runs.
        profile = run.catalog.environments.get(key) if (key := environment(env).key) else None
        enabled = set(profile.applyEnabled) if profile else set()
        problems += [p for d in run.desired for p in apply_refusal(d, enabled, only=bool(services))]
    # A k3s-only service (decision-center) never gets a Compose service, in any mode or environment.
    deploying = {i.id for i in plan.services if i.action == "deploy"}
    for d in run.desired:
        if d.id in deploying and d.microservice is not None:
            problems += k3s_only.catalog_problems(run.catalog, d.microservice)
    refused = {p.service for p in problems}
    records, step_problems = step_records(run.catalog, [i for i in plan.services if i.id not in refused], lock_env)
    problems = list(dict.fromkeys(problems + step_problems))
    if not plan.services:
        problems.append(Problem(ErrorCode.MANIFEST_INVALID, "the manifest lists no services to apply"))
    if problems:
        doc.errors = to_errors(problems)
        return doc

    try:
        job_id, takeovers = launch(
            ws,
            run.catalog,
            plan.services,
            records,
            lock_env=lock_env,
            source=plan.source,
            dry_run=dry_run,
            force=force,
            warnings=doc.warnings,
            no_restore=no_restore,
        )
    except UnideskError as exc:
        doc.errors = to_errors(exc.problems)
        return doc
    doc.ok, doc.jobId, doc.status = True, job_id, JobStatus.QUEUED
    doc.warnings += takeovers
    return doc


def wait_job(
    state_dir: Path,
    job_id: str,
    *,
    on_events: Callable[[list[JobEvent]], None] | None = None,
    poll: float = POLL_S,
    stop: Callable[[], bool] | None = None,
) -> JobRecord:
    """Follow a job to its end (a dead worker ends it as `interrupted`), or until `stop()`."""
    offset = 0
    while True:
        record = jobs.load_job(state_dir, job_id)
        if on_events is not None:
            while True:
                events, new = jobs.read_events(state_dir, job_id, offset)
                if new == offset:
                    break
                offset = new
                on_events(events)
        if record.status in JOB_TERMINAL or (stop is not None and stop()):
            return record
        time.sleep(poll)
