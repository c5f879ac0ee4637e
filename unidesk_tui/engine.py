"""The job engine: a plan item becomes an executor and its step records, and a recorded job runs.

`step_records` lists, before a job starts, the steps each plan item will run (apply records them
in job.json); `JobEngine` runs them in the detached worker (worker.py): each service's executor
steps in order, every step's status, timing and verification layers in job.json, their progress in
the event log; a step that emitted nothing fails (`no_progress`). Executors are found only through
executors/registry.py.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.base import RESTORE_POINT, SKIP_STEPS, RestorePoint, Step
from executors.registry import executor_for
from unidesk_tui import jobs, locks, target_locks
from unidesk_tui.catalog import Catalog, Target, parse_catalog
from unidesk_tui.documents import ErrorItem, JobRecord, JobResult, LayerCheck, PlanItem, Restored, StepRecord
from unidesk_tui.errors import ErrorCode, Problem, UnideskError
from unidesk_tui.model import (
    STEP_ACTIVE,
    Action,
    DesiredService,
    Environment,
    JobStatus,
    Outcome,
    StepStatus,
    Verification,
)
from unidesk_tui.plan import desired_service

if TYPE_CHECKING:
    from unidesk_tui.targets import TargetPool, TargetSession

log = logging.getLogger(__name__)


def desired_from_plan(catalog: Catalog, item: PlanItem, environment: Environment) -> DesiredService:
    """Rebuild the resolved DesiredService a plan item was made from (a task's has no microservice)."""
    if item.mode and executor_for(item.mode).task:
        return DesiredService(item.id, item.repo or "", item.requestedCommit or "", None, item.mode, item.target)
    ms = catalog.microservice(item.id)
    if ms is None:
        raise UnideskError.of(
            ErrorCode.UNKNOWN_SERVICE, f"{item.id}: missing from the job's catalog snapshot", service=item.id
        )
    return desired_service(catalog, ms, item.id, item.repo or "", item.requestedCommit or "", environment, item.commit)


def step_records(
    catalog: Catalog, items: list[PlanItem], environment: Environment
) -> tuple[list[StepRecord], list[Problem]]:
    """The steps each plan item will run, as its executor describes them; noop is a skipped step."""
    records: list[StepRecord] = []
    problems: list[Problem] = []
    for item in items:
        if item.action == Action.UNSUPPORTED:
            problems.append(Problem(ErrorCode.UNSUPPORTED_SERVICE, f"{item.id}: {item.reason}", service=item.id))
            continue
        if item.action == Action.ERROR:
            problems.append(Problem(ErrorCode.PROBE_FAILED, f"{item.id}: {item.reason}", service=item.id))
            continue
        if item.action == Action.NOOP:
            records.append(StepRecord(service=item.id, name="noop", status=StepStatus.SKIPPED, message=item.reason))
            continue
        try:
            desired = desired_from_plan(catalog, item, environment)
            steps = executor_for(desired.mode).steps(desired)
        except UnideskError as exc:
            problems.extend(Problem(p.code, p.message, service=item.id, path=p.path) for p in exc.problems)
            continue
        if not steps:
            problems.append(
                Problem(
                    ErrorCode.UNSUPPORTED_SERVICE, f"{item.id}: the {item.mode} executor has no steps", service=item.id
                )
            )
        records += [StepRecord(service=item.id, name=s.name, readOnly=s.read_only) for s in steps]
    return records, problems


class _Pool:
    """The target pool, opened on first use (a dry run of read-only steps may never need it)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._pool: TargetPool | None = None

    async def session(self, target_id: str) -> TargetSession:
        if self._pool is None:
            from unidesk_tui.targets import TargetPool  # asyncssh: only when a step needs a target

            self._pool = TargetPool(self.catalog)
        return await self._pool.session(target_id)

    def connected(self, target_id: str) -> bool:
        return self._pool is not None and self._pool.connected(target_id)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


@dataclass
class Context:
    """The StepContext (executors/base.py) one step runs with."""

    catalog: Catalog
    service: DesiredService
    target: Target
    dry_run: bool
    force: bool
    shared: dict[str, Any]
    _log: jobs.EventLog
    _pool: _Pool
    step: str = ""
    events: int = field(default=0)
    verification: Verification | None = None

    def emit(self, text: str, stream: str = "stdout") -> None:
        if not text.strip():  # progress means output: an empty line is neither recorded nor counted
            return
        self.events += 1
        self._log.append(text, step=self.step, service=self.service.id, stream=stream)

    def verified(self, result: Verification) -> None:
        self.verification = result

    async def session(self) -> TargetSession:
        return await self._pool.session(self.target.id)

    def connected(self) -> bool:
        """Whether an SSH session to the target is open (a step used it)."""
        return self._pool.connected(self.target.id)


def target_lock_wanted(record: JobRecord) -> dict[str, str]:
    """service id -> target id of the items whose target the job locks (not a noop, not a dry run)."""
    if record.dryRun:
        return {}
    return {
        item.id: item.target
        for item in record.plan
        if item.target
        and item.mode
        and (item.action != Action.NOOP or record.force)
        and executor_for(item.mode).target_lock
    }


class PreLocked:
    """Target locks taken by the worker before it answers the CLI (launch.accept), handed to the
    engine with the pool whose SSH sessions hold them."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.pool: _Pool | None = None
        self.held = target_locks.TargetLocks()
        self.takeovers: list[str] = []

    async def take(self, record: JobRecord, catalog_json: str) -> list[str]:
        """Take the job's target locks; their takeover messages. Raises UnideskError (`locked`)."""
        wanted = target_lock_wanted(record)
        if not wanted:
            return []
        self.pool = _Pool(parse_catalog(catalog_json, origin="catalog snapshot"))
        try:
            self.held = await target_locks.acquire(
                self.pool, record.environment, wanted, str(self.state_dir), os.getpid(), record.id
            )
        except BaseException:
            await self.release()
            raise
        self.takeovers = list(self.held.takeovers)
        return self.takeovers

    async def release(self) -> None:
        await self.held.release()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None


STOP_GRACE = 5.0  # seconds a stopped step's own cleanup (e.g. removing its build context) may take
ANSWER_TIMEOUT = 5.0  # seconds a target has to answer a round trip once a step exceeded its limit


class Overrun(enum.Enum):
    """How a step that exceeded its limit left: stopped, or stopped on a target that went silent."""

    STOPPED = "stopped"
    TARGET_SILENT = "target-silent"


async def run_within(step: Step, ctx: Context, limit: float | None) -> Overrun | None:
    """Run `step`; None when it ended within `limit`. A step stopped at its limit, or cancelled, gets
    STOP_GRACE seconds for its cleanup: a cleanup blocked on a target that no longer answers must
    not hold the job past its limit (it ends when the job's SSH sessions close). Meanwhile the
    target is asked whether it still answers: a frozen host is the cause then, not a slow step."""
    task = asyncio.ensure_future(step.run(ctx))
    try:
        await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:
        await _stop(task)
        raise
    if task.done():
        task.result()  # its exception, if any
        return None
    _, silent = await asyncio.gather(_stop(task), target_silent(ctx))
    return Overrun.TARGET_SILENT if silent else Overrun.STOPPED


async def _stop(task: asyncio.Future[None]) -> None:
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_GRACE)
    if not done:
        log.debug("a stopped step is still cleaning up after %s s; left to end with its SSH session", STOP_GRACE)
    # an error raised by its cleanup does not replace why the step was stopped
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def target_silent(ctx: Context) -> bool:
    """Whether the step's target, over the SSH session the step used, no longer answers a command
    within ANSWER_TIMEOUT (False when no session to it is open: nothing to ask)."""
    if not ctx.connected():
        return False
    try:
        session = await ctx.session()
        return not (await session.run(["true"], timeout=ANSWER_TIMEOUT)).ok
    except (UnideskError, OSError):
        return True
    except Exception as exc:  # asyncssh errors: the connection is gone
        from unidesk_tui.targets import is_connection_loss

        if is_connection_loss(exc):
            return True
        raise


class JobEngine:
    """Runs one recorded job: each plan item's steps in order, recorded in job.json and its event log."""

    def __init__(self, state_dir: Path, job_id: str, *, pre_locked: PreLocked | None = None) -> None:
        self.state_dir = state_dir
        self.job_id = job_id
        self.pre_locked = pre_locked
        self.log = jobs.EventLog(state_dir, job_id)
        self.current: tuple[str, str] | None = None  # (service, step) running now, or the last one cancelled
        self.restored: Restored | None = None  # what a failed rollout or verification put back

    def update(self, change: Callable[[JobRecord], JobRecord | None]) -> JobRecord:
        return jobs.update_job(self.state_dir, self.job_id, change)

    def set_step(self, index: int, **fields: Any) -> None:
        def change(rec: JobRecord) -> None:
            rec.steps[index] = rec.steps[index].model_copy(update=fields)

        self.update(change)

    def engine(self, text: str, service: str | None = None, step: str | None = None) -> None:
        self.log.append(text, step=step, service=service, stream="engine")

    async def run(self) -> JobRecord:
        pid = os.getpid()
        record = self.update(
            lambda r: r.model_copy(
                update={
                    "status": JobStatus.RUNNING,
                    "startedAt": jobs.now_iso(),
                    "workerPid": pid,
                    "workerStart": jobs.process_start(pid),
                }
            )
        )
        self.engine(
            f"worker {pid} started on {jobs.HOST}" + (" (dry run: only read-only steps run)" if record.dryRun else "")
        )
        catalog = parse_catalog(
            (jobs.job_dir(self.state_dir, self.job_id) / jobs.CATALOG_FILE).read_bytes(), origin="catalog snapshot"
        )
        self.log.max_bytes = catalog.jobs.maxLogBytes
        environment = Environment(record.environment)
        pre = self.pre_locked
        pool = pre.pool if pre is not None and pre.pool is not None else _Pool(catalog)
        outcome: dict[str, Outcome] = {}
        errors: list[ErrorItem] = []
        status = JobStatus.SUCCEEDED
        if record.environment == Environment.PROD:  # apply() and launch() refuse it; so does a job.json made by hand
            errors.append(
                ErrorItem(
                    code=ErrorCode.PROD_APPLY_DISABLED,
                    message="a job for environment prod is refused: production apply is disabled",
                )
            )
            status = JobStatus.FAILED
        if jobs.cancel_requested(self.state_dir, self.job_id):
            status = JobStatus.CANCELLED
        held = pre.held if pre is not None else target_locks.TargetLocks()
        try:
            try:
                if pre is not None and pre.held.held:
                    self.engine(
                        "target locks held: " + ", ".join(f"{key} on {target}" for target, key, _ in pre.held.held)
                    )
                elif status == JobStatus.SUCCEEDED and not record.dryRun:
                    try:
                        held = await self._target_locks(record, pool)
                    except UnideskError as exc:
                        errors += [ErrorItem(**p.to_dict()) for p in exc.problems]
                        status = JobStatus.FAILED
                        for item in record.plan:
                            outcome[item.id] = Outcome.SKIPPED
                            self._skip_rest(item.id, f"not run: {exc.problems[0].message}")
                for item in record.plan:
                    if status == JobStatus.SUCCEEDED and jobs.cancel_requested(self.state_dir, self.job_id):
                        status = JobStatus.CANCELLED
                    if status == JobStatus.CANCELLED:
                        break
                    if status != JobStatus.SUCCEEDED:
                        self._skip_rest(item.id, "not run: an earlier service failed")
                        outcome[item.id] = Outcome.SKIPPED
                        continue
                    result, problems = await self._service(catalog, record, item, environment, pool)
                    outcome[item.id] = result
                    errors += problems
                    if result == Outcome.FAILED:
                        status = JobStatus.FAILED
                    elif result == Outcome.CANCELLED:
                        status = JobStatus.CANCELLED
            except asyncio.CancelledError:
                status = JobStatus.CANCELLED
            if status == JobStatus.CANCELLED:
                where = f"during {self.current[0]} step {self.current[1]}" if self.current else "before any step ran"
                errors.append(
                    ErrorItem(
                        code=ErrorCode.CANCELLED,
                        message=f"the job was cancelled {where}",
                        service=self.current[0] if self.current else None,
                    )
                )
                for item in record.plan:
                    outcome.setdefault(item.id, Outcome.CANCELLED)
                    self._skip_rest(item.id, "not run: job cancelled")
            final = self.update(
                lambda r: r.model_copy(
                    update={
                        "status": status,
                        "endedAt": jobs.now_iso(),
                        "result": JobResult(
                            ok=status == JobStatus.SUCCEEDED, services=outcome, errors=errors, restored=self.restored
                        ),
                    }
                )
            )
            self.engine(f"job {status}")
            if not record.dryRun:
                locks.release(self.state_dir, record.environment, record.services, self.job_id)
        finally:
            # The target locks last, after the final record and the local locks: held the other way
            # round, an apply of this state dir could take the freed target lock, meet the local one
            # and leave no job, while applies elsewhere were refused in that job's name.
            try:
                await asyncio.shield(held.release())
                await asyncio.shield(pool.close())
            except (Exception, asyncio.CancelledError):  # closing must not change the job's result
                log.debug("closing the target pool failed", exc_info=True)
        return final

    async def _target_locks(self, record: JobRecord, pool: _Pool) -> target_locks.TargetLocks:
        """Take the lock on each service's target (one apply per service across controllers)."""
        wanted = target_lock_wanted(record)
        if not wanted:
            return target_locks.TargetLocks()
        held = await target_locks.acquire(
            pool, record.environment, wanted, str(self.state_dir), os.getpid(), self.job_id
        )
        for message in held.takeovers:
            self.engine(message)
        self.engine("target locks held: " + ", ".join(f"{key} on {target}" for target, key, _ in held.held))
        return held

    def _skip_rest(self, service: str, why: str) -> None:
        def change(rec: JobRecord) -> None:
            for i, s in enumerate(rec.steps):
                if s.service == service and s.status in STEP_ACTIVE:
                    status = StepStatus.SKIPPED if s.status == StepStatus.PENDING else StepStatus.CANCELLED
                    rec.steps[i] = s.model_copy(update={"status": status, "message": why})

        self.update(change)

    async def _service(
        self, catalog: Catalog, record: JobRecord, item: PlanItem, environment: Environment, pool: _Pool
    ) -> tuple[Outcome, list[ErrorItem]]:
        indexes = [i for i, s in enumerate(record.steps) if s.service == item.id]
        if item.action == Action.NOOP and not record.force:
            self.engine(f"{item.id}: noop, {item.reason}; nothing to do", service=item.id)
            return Outcome.SKIPPED, []
        try:
            service = desired_from_plan(catalog, item, environment)
            steps = executor_for(service.mode).steps(service)
        except UnideskError as exc:
            return self._fail_service(item.id, indexes, exc)
        if [record.steps[i].name for i in indexes] != [s.name for s in steps]:
            # The executor changed its mind since apply listed the steps: record what runs.
            indexes = self._relist(item.id, steps)
        target = catalog.target(service.target or "")
        shared: dict[str, Any] = {}
        for index, step in zip(indexes, steps, strict=True):
            if jobs.cancel_requested(self.state_dir, self.job_id):
                self.current = (item.id, step.name)
                raise asyncio.CancelledError
            if (why := shared.get(SKIP_STEPS, {}).get(step.name)) is not None:
                self.set_step(index, status=StepStatus.SKIPPED, message=why)
                self.engine(f"step {step.name} skipped: {why}", service=item.id, step=step.name)
                continue
            if record.dryRun and not step.read_only:
                self.set_step(index, status=StepStatus.SKIPPED, message="dry run: would run")
                self.engine(f"dry run: would run {step.name}", service=item.id, step=step.name)
                continue
            ctx = Context(catalog, service, target, record.dryRun, record.force, shared, self.log, pool, step=step.name)
            problem = await self._step(index, step, ctx)
            if problem is not None:
                self._skip_rest(item.id, f"not run: {step.name} failed")
                if step.restores and not record.dryRun:
                    await self._restore(
                        record, service, Context(catalog, service, target, False, False, shared, self.log, pool)
                    )
                return (Outcome.CANCELLED if problem.code == ErrorCode.CANCELLED else Outcome.FAILED), [problem]
        return (Outcome.DRY_RUN if record.dryRun else Outcome.SUCCEEDED), []

    async def _restore(self, record: JobRecord, service: DesiredService, base: Context) -> None:
        """After a failed rollout or verification: put back what ran before the job and verify it."""
        sid = service.id
        point: RestorePoint | None = base.shared.get(RESTORE_POINT)
        steps = executor_for(service.mode).restore_steps(service)
        if record.noRestore:
            self.engine(
                "restore skipped (--no-restore): the failed version is left in place for debugging", service=sid
            )
            return
        if point is None or not steps:
            self.engine("nothing to restore: no previous version was recorded at the start of the job", service=sid)
            return
        previous = replace(service, commit=point.commit, repo=point.repo, requestedCommit=point.requestedCommit)
        self.engine(f"restoring {point.commit[:12]} ({point.image_id[:19]}), what ran before this job", service=sid)
        indexes = self._append(sid, steps)
        verified, why = True, None
        for index, step in zip(indexes, steps, strict=True):
            if not verified:
                self.set_step(index, status=StepStatus.SKIPPED, message=f"not run: {why}")
                continue
            problem = await self._step(
                index, step, replace(base, service=previous, step=step.name, events=0, verification=None)
            )
            if problem is not None:
                verified, why = False, problem.message
        self.restored = Restored(service=sid, commit=point.commit, verified=verified, message=why)
        self.engine(
            f"restored {point.commit[:12]}: " + ("verified" if verified else f"NOT verified: {why}"), service=sid
        )

    def _append(self, service: str, steps: list[Step]) -> list[int]:
        """Record `steps` after the service's own steps; their indexes."""
        out: list[int] = []

        def change(rec: JobRecord) -> None:
            at = max((i for i, s in enumerate(rec.steps) if s.service == service), default=len(rec.steps) - 1) + 1
            rec.steps[at:at] = [StepRecord(service=service, name=s.name, readOnly=s.read_only) for s in steps]
            out.extend(range(at, at + len(steps)))

        self.update(change)
        return out

    def _fail_service(self, service: str, indexes: list[int], exc: UnideskError) -> tuple[Outcome, list[ErrorItem]]:
        for p in exc.problems:
            self.engine(f"{p.code}: {p.message}", service=service)
        self._skip_rest(service, f"not run: {exc.problems[0].message}")
        return Outcome.FAILED, [ErrorItem(**{**p.to_dict(), "service": service}) for p in exc.problems]

    def _relist(self, service: str, steps: list[Step]) -> list[int]:
        out: list[int] = []

        def change(rec: JobRecord) -> None:
            keep = [s for s in rec.steps if s.service != service]
            at = next((i for i, s in enumerate(rec.steps) if s.service == service), len(keep))
            new = [StepRecord(service=service, name=s.name, readOnly=s.read_only) for s in steps]
            rec.steps[:] = keep[:at] + new + keep[at:]
            out.extend(range(at, at + len(new)))

        self.update(change)
        return out

    async def _step(self, index: int, step: Step, ctx: Context) -> ErrorItem | None:
        """Run one step; its problem, or None when it succeeded."""
        service = ctx.service.id
        started = time.monotonic()
        self.current = (service, step.name)
        self.set_step(index, status=StepStatus.RUNNING, startedAt=jobs.now_iso())
        self.engine(f"step {step.name} started", service=service, step=step.name)
        problem: ErrorItem | None = None
        status = StepStatus.SUCCEEDED
        ms = ctx.service.microservice
        limit = ms.timeout(step.limit) if step.limit and ms is not None else None
        try:
            overrun = await run_within(step, ctx, limit)
            if overrun is not None:
                # Stopped at its limit: its remote command dies with its SSH channel.
                if overrun == Overrun.TARGET_SILENT:
                    ctx.emit(
                        f"step {step.name} exceeded its limit of {limit} s and target {ctx.target.id} does not "
                        f"answer over SSH: stopped",
                        "stderr",
                    )
                    raise UnideskError.of(
                        ErrorCode.TARGET_UNREACHABLE,
                        f"{service}: step {step.name} exceeded its limit of {limit} s and target {ctx.target.id} "
                        f"does not answer over SSH (no reply within {ANSWER_TIMEOUT:g} s)",
                        service=service,
                    )
                ctx.emit(
                    f"step {step.name} exceeded its limit of {limit} s: stopped, its remote command killed", "stderr"
                )
                raise UnideskError.of(
                    ErrorCode.STEP_TIMEOUT,
                    f"{service}: step {step.name} exceeded its limit of {limit} s "
                    f"(config.json microservices[].timeouts.{step.limit})",
                    service=service,
                )
            if ctx.events == 0:
                problem = ErrorItem(
                    code=ErrorCode.NO_PROGRESS,
                    message=f"{service}: step {step.name} emitted no progress event",
                    service=service,
                )
        except asyncio.CancelledError:
            status = StepStatus.CANCELLED
            problem = ErrorItem(
                code=ErrorCode.CANCELLED, message=f"{service}: step {step.name} cancelled", service=service
            )
        except UnideskError as exc:
            p = exc.problems[0]
            problem = ErrorItem(
                code=str(p.code),
                message=self.log.redact(str(exc) if len(exc.problems) > 1 else p.message),
                service=service,
                path=p.path,
            )
        except Exception as exc:  # a lost connection is the target's; anything else an executor bug
            log.debug("step %s raised", step.name, exc_info=True)
            from unidesk_tui.targets import is_connection_loss

            if is_connection_loss(exc):
                why = (
                    f"{service}: step {step.name}: target {ctx.target.id} unreachable: connection lost "
                    f"({type(exc).__name__}: {exc})"
                )
                problem = ErrorItem(code=ErrorCode.TARGET_UNREACHABLE, message=self.log.redact(why), service=service)
            else:
                problem = ErrorItem(
                    code=ErrorCode.INTERNAL,
                    message=self.log.redact(f"{service}: step {step.name} raised {type(exc).__name__}: {exc}"),
                    service=service,
                )
        if problem is not None and status != StepStatus.CANCELLED:
            status = StepStatus.FAILED
        took = int((time.monotonic() - started) * 1000)
        checks = [LayerCheck(**asdict(c)) for c in ctx.verification.checks] if ctx.verification else []
        self.set_step(
            index,
            status=status,
            endedAt=jobs.now_iso(),
            durationMs=took,
            events=ctx.events,
            code=problem.code if problem else None,
            message=problem.message if problem else None,
            verification=checks,
        )
        self.engine(
            f"step {step.name} {status} in {took} ms" + (f": {problem.code}: {problem.message}" if problem else ""),
            service=service,
            step=step.name,
        )
        if status == StepStatus.CANCELLED:
            raise asyncio.CancelledError
        return problem
