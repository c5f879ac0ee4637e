"""The detached job worker: `python -m unidesk_tui.worker <state-dir> <job-id>`.

Runs each service's executor steps in order, records every step's status and timing in job.json,
appends their progress to the event log, fails a step that emitted nothing (`no_progress`), and
records the result. Before the first step it takes the lock on each service's target host
(target_locks.py), held by its SSH session until the job ends. `jobs.cancel` (a request file, then SIGTERM) cancels the job: the running step
is stopped, its remote command killed on the target with its channel, and the job recorded
`cancelled` naming that step; the locks are released at the end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from executors.base import Executor, Step, executor_for
from unidesk_tui import jobs, locks, target_locks
from unidesk_tui.catalog import Catalog, Target, parse_catalog
from unidesk_tui.documents import ErrorItem, JobRecord, JobResult, PlanItem, StepRecord
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.plan import DesiredService, desired_service

log = logging.getLogger(__name__)


def load_executors() -> None:
    """Register the built-in executors (nothing from the environment can add or replace one)."""
    try:
        import executors.registry  # noqa: F401
    except ImportError as exc:
        log.debug("built-in executors unavailable: %s", exc)


def executor(mode: str) -> Executor:
    """The executor for `mode`; an UnideskError(unsupported_service) when there is none."""
    load_executors()
    try:
        return executor_for(mode)
    except (KeyError, ImportError) as exc:
        raise UnideskError.of(ErrorCode.UNSUPPORTED_SERVICE, f"no executor for deployment mode {mode!r}: {exc}") from None


def desired_from_plan(catalog: Catalog, item: PlanItem, environment: str | None) -> DesiredService:
    """Rebuild the resolved DesiredService a plan item was made from (a task's has no microservice)."""
    if item.mode and executor(item.mode).task:
        return DesiredService(item.id, item.repo or "", item.requestedCommit or "", None, item.mode, item.target)
    ms = catalog.microservice(item.id)
    if ms is None:
        raise UnideskError.of(ErrorCode.UNKNOWN_SERVICE, f"{item.id}: missing from the job's catalog snapshot", service=item.id)
    return desired_service(catalog, ms, item.id, item.repo or "", item.requestedCommit or "", environment, item.commit)


class _Pool:
    """The target pool, opened on first use (a dry run of read-only steps may never need it)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._pool = None

    async def session(self, target_id: str):
        if self._pool is None:
            try:
                from unidesk_tui.targets import TargetPool
            except ImportError as exc:
                raise UnideskError.of(ErrorCode.TARGET_UNREACHABLE, f"the target pool (unidesk_tui.targets) is not available: {exc}") from None
            self._pool = TargetPool(self.catalog)
        return await self._pool.session(target_id)

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
    shared: dict
    _log: jobs.EventLog
    _pool: _Pool
    step: str = ""
    events: int = field(default=0)

    def emit(self, text: str, stream: str = "stdout") -> None:
        self.events += 1
        self._log.append(text, step=self.step, service=self.service.id, stream=stream)

    async def session(self):
        return await self._pool.session(self.target.id)


class Worker:
    def __init__(self, state_dir: Path, job_id: str) -> None:
        self.state_dir = state_dir
        self.job_id = job_id
        self.log = jobs.EventLog(state_dir, job_id)
        self.current: tuple[str, str] | None = None  # (service, step) running now, or the last one cancelled

    def update(self, change) -> JobRecord:
        return jobs.update_job(self.state_dir, self.job_id, change)

    def set_step(self, index: int, **fields) -> None:
        def change(rec: JobRecord) -> None:
            rec.steps[index] = rec.steps[index].model_copy(update=fields)

        self.update(change)

    def engine(self, text: str, service: str | None = None, step: str | None = None) -> None:
        self.log.append(text, step=step, service=service, stream="engine")

    async def run(self) -> JobRecord:
        pid = os.getpid()
        record = self.update(lambda r: r.model_copy(update={"status": "running", "startedAt": jobs.now_iso(), "workerPid": pid, "workerStart": jobs.process_start(pid)}))
        self.engine(f"worker {pid} started on {jobs.HOST}" + (" (dry run: only read-only steps run)" if record.dryRun else ""))
        catalog = parse_catalog((jobs.job_dir(self.state_dir, self.job_id) / jobs.CATALOG_FILE).read_bytes(), origin="catalog snapshot")
        self.log.max_bytes = catalog.jobs.maxLogBytes
        environment = record.environment if record.environment != "file" else None
        pool = _Pool(catalog)
        outcome: dict[str, str] = {}
        errors: list[ErrorItem] = []
        status = "succeeded"
        if record.environment == "prod":  # apply() and launch() refuse it; so does a job.json made by hand
            errors.append(ErrorItem(code=ErrorCode.PROD_APPLY_DISABLED, message="a job for environment prod is refused: production apply is disabled"))
            status = "failed"
        if jobs.cancel_requested(self.state_dir, self.job_id):
            status = "cancelled"
        held = target_locks.TargetLocks()
        try:
            if status == "succeeded" and not record.dryRun:
                try:
                    held = await self._target_locks(record, pool)
                except UnideskError as exc:
                    errors += [ErrorItem(**p.to_dict()) for p in exc.problems]
                    status = "failed"
                    for item in record.plan:
                        outcome[item.id] = "skipped"
                        self._skip_rest(item.id, f"not run: {exc.problems[0].message}")
            for item in record.plan:
                if status == "succeeded" and jobs.cancel_requested(self.state_dir, self.job_id):
                    status = "cancelled"
                if status == "cancelled":
                    break
                if status != "succeeded":
                    self._skip_rest(item.id, "not run: an earlier service failed")
                    outcome[item.id] = "skipped"
                    continue
                result, problems = await self._service(catalog, record, item, environment, pool)
                outcome[item.id] = result
                errors += problems
                if result in ("failed", "cancelled"):
                    status = result
        except asyncio.CancelledError:
            status = "cancelled"
        finally:
            try:
                await asyncio.shield(held.release())
                await asyncio.shield(pool.close())
            except (Exception, asyncio.CancelledError):  # closing must not change the job's result
                log.debug("closing the target pool failed", exc_info=True)
        if status == "cancelled":
            where = f"during {self.current[0]} step {self.current[1]}" if self.current else "before any step ran"
            errors.append(ErrorItem(code=ErrorCode.CANCELLED, message=f"the job was cancelled {where}",
                                    service=self.current[0] if self.current else None))
            for item in record.plan:
                outcome.setdefault(item.id, "cancelled")
                self._skip_rest(item.id, "not run: job cancelled")
        final = self.update(lambda r: r.model_copy(update={
            "status": status, "endedAt": jobs.now_iso(),
            "result": JobResult(ok=status == "succeeded", services=outcome, errors=errors),
        }))
        self.engine(f"job {status}")
        if not record.dryRun:
            locks.release(self.state_dir, record.environment, record.services, self.job_id)
        return final

    async def _target_locks(self, record: JobRecord, pool: _Pool) -> target_locks.TargetLocks:
        """Take the lock on each service's target (one apply per service across controllers)."""
        wanted = {item.id: item.target for item in record.plan
                  if item.target and item.mode and (item.action != "noop" or record.force) and executor(item.mode).target_lock}
        if not wanted:
            return target_locks.TargetLocks()
        held = await target_locks.acquire(pool, record.environment, wanted, str(self.state_dir), os.getpid(), self.job_id)
        for message in held.takeovers:
            self.engine(message)
        self.engine("target locks held: " + ", ".join(f"{key} on {target}" for target, key, _ in held.held))
        return held

    def _skip_rest(self, service: str, why: str) -> None:
        def change(rec: JobRecord) -> None:
            for i, s in enumerate(rec.steps):
                if s.service == service and s.status in ("pending", "running"):
                    rec.steps[i] = s.model_copy(update={"status": "skipped" if s.status == "pending" else "cancelled", "message": why})

        self.update(change)

    async def _service(self, catalog: Catalog, record: JobRecord, item: PlanItem, environment: str | None, pool: _Pool) -> tuple[str, list[ErrorItem]]:
        indexes = [i for i, s in enumerate(record.steps) if s.service == item.id]
        if item.action == "noop" and not record.force:
            self.engine(f"{item.id}: noop, {item.reason}; nothing to do", service=item.id)
            return "skipped", []
        try:
            service = desired_from_plan(catalog, item, environment)
            steps = executor(service.mode or "").steps(service)
        except UnideskError as exc:
            return self._fail_service(item.id, indexes, exc)
        if [record.steps[i].name for i in indexes] != [s.name for s in steps]:
            # The executor changed its mind since apply listed the steps: record what runs.
            indexes = self._relist(item.id, steps)
        target = catalog.target(service.target or "")
        shared: dict = {}
        for index, step in zip(indexes, steps, strict=True):
            if jobs.cancel_requested(self.state_dir, self.job_id):
                self.current = (item.id, step.name)
                raise asyncio.CancelledError
            if record.dryRun and not step.read_only:
                self.set_step(index, status="skipped", message="dry run: would run")
                self.engine(f"dry run: would run {step.name}", service=item.id, step=step.name)
                continue
            ctx = Context(catalog, service, target, record.dryRun, record.force, shared, self.log, pool, step=step.name)
            ok, problem = await self._step(index, step, ctx)
            if not ok:
                self._skip_rest(item.id, f"not run: {step.name} failed")
                return ("cancelled" if problem.code == ErrorCode.CANCELLED else "failed"), [problem]
        return ("dry-run" if record.dryRun else "succeeded"), []

    def _fail_service(self, service: str, indexes: list[int], exc: UnideskError) -> tuple[str, list[ErrorItem]]:
        for p in exc.problems:
            self.engine(f"{p.code}: {p.message}", service=service)
        self._skip_rest(service, f"not run: {exc.problems[0].message}")
        return "failed", [ErrorItem(**{**p.to_dict(), "service": service}) for p in exc.problems]

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

    async def _step(self, index: int, step: Step, ctx: Context) -> tuple[bool, ErrorItem | None]:
        service = ctx.service.id
        started = time.monotonic()
        self.current = (service, step.name)
        self.set_step(index, status="running", startedAt=jobs.now_iso())
        self.engine(f"step {step.name} started", service=service, step=step.name)
        problem: ErrorItem | None = None
        status = "succeeded"
        ms = ctx.service.microservice
        limit = ms.timeout(step.limit) if step.limit and ms is not None else None
        try:
            try:
                # On timeout the step is cancelled: its remote command dies with its SSH channel.
                await asyncio.wait_for(step.run(ctx), limit)
            except asyncio.TimeoutError:
                ctx.emit(f"step {step.name} exceeded its limit of {limit} s: stopped, its remote command killed", "stderr")
                raise UnideskError.of(ErrorCode.STEP_TIMEOUT, f"{service}: step {step.name} exceeded its limit of {limit} s "
                                      f"(config.json microservices[].timeouts.{step.limit})", service=service) from None
            if ctx.events == 0:
                problem = ErrorItem(code=ErrorCode.NO_PROGRESS, message=f"{service}: step {step.name} emitted no progress event", service=service)
        except asyncio.CancelledError:
            status = "cancelled"
            problem = ErrorItem(code=ErrorCode.CANCELLED, message=f"{service}: step {step.name} cancelled", service=service)
        except UnideskError as exc:
            p = exc.problems[0]
            problem = ErrorItem(code=str(p.code), message=self.log.redact(str(exc) if len(exc.problems) > 1 else p.message), service=service, path=p.path)
        except Exception as exc:  # an executor bug still ends as a recorded, failed step
            log.debug("step %s raised", step.name, exc_info=True)
            problem = ErrorItem(code=ErrorCode.INTERNAL, message=self.log.redact(f"{service}: step {step.name} raised {type(exc).__name__}: {exc}"), service=service)
        if problem is not None and status != "cancelled":
            status = "failed"
        took = int((time.monotonic() - started) * 1000)
        self.set_step(index, status=status, endedAt=jobs.now_iso(), durationMs=took, events=ctx.events,
                      code=problem.code if problem else None, message=problem.message if problem else None)
        self.engine(f"step {step.name} {status} in {took} ms" + (f": {problem.code}: {problem.message}" if problem else ""), service=service, step=step.name)
        if status == "cancelled":
            raise asyncio.CancelledError
        return problem is None, problem


async def _main(state_dir: Path, job_id: str) -> JobRecord:
    worker = Worker(state_dir, job_id)
    task = asyncio.ensure_future(worker.run())
    loop = asyncio.get_running_loop()
    cancelled = False

    def on_term() -> None:
        nonlocal cancelled
        if not cancelled:
            cancelled = True
            worker.engine("SIGTERM received: cancelling")
            task.cancel()  # run() catches it around the steps and records `cancelled`

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_term)
    return await task


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=os.environ.get("UNIDESK_LOG_LEVEL", "WARNING"), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 2:
        sys.stderr.write("usage: python -m unidesk_tui.worker <state-dir> <job-id>\n")
        return 2
    state_dir, job_id = Path(argv[0]), jobs.check_job_id(argv[1])
    from unidesk_tui import launch

    record, answer = launch.accept(state_dir, job_id, sys.stdin.buffer.read())
    if answer is not None:
        launch.reply(sys.stdout.buffer, answer)
    if record is None:
        return 3  # refused or abandoned: no job, no lock
    stderr = os.open(jobs.job_dir(state_dir, job_id) / jobs.STDERR_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(stderr, 2)
    os.close(stderr)
    return run(state_dir, job_id)


def run(state_dir: Path, job_id: str) -> int:
    """Run a recorded job to its end; 0 when it succeeded."""
    try:
        record = asyncio.run(_main(state_dir, job_id))
    except Exception as exc:  # the bookkeeping itself failed: leave a trace, the job reads as interrupted
        log.exception("worker for job %s failed", job_id)
        try:
            jobs.EventLog(state_dir, job_id).append(f"worker error: {type(exc).__name__}: {exc}", stream="engine")
        except Exception:
            pass
        return 1
    return 0 if record.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
