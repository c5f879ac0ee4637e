"""Starting a job's worker so that a lock is never held by anyone but the job's own worker.

The CLI (`start`) spawns the detached worker and sends it the prepared job on its stdin. The
worker (`accept`) takes the job's locks under its own pid, creates the job (job.json, catalog
snapshot, first events) and only then answers on its stdout. So:
- a CLI killed before the request is complete leaves no job and no lock (the worker sees a short
  read and exits);
- a CLI killed afterwards leaves a job run by a live worker that holds its own locks, which no
  later apply can take over (locks.stale_reason);
- a refused worker (`locked`, here or on a target host) leaves no job and no lock, and the CLI
  reports its problems.
Signals in the CLI from the spawn on wait until the job id is printed (signals.hold).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel, ValidationError

from unidesk_tui import jobs, locks, signals
from unidesk_tui.documents import JobRecord
from unidesk_tui.errors import ErrorCode, Problem, UnideskError
from unidesk_tui.files import atomic_write

log = logging.getLogger(__name__)


class Event(BaseModel):
    text: str
    service: str | None = None


class Request(BaseModel):
    """What the CLI hands the worker: the job to record and the catalog snapshot it runs with."""

    job: JobRecord
    catalog: str
    events: list[Event] = []


class Answer(BaseModel):
    ok: bool
    takeovers: list[str] = []
    errors: list[dict] = []


def _spawn(state_dir: Path, job_id: str) -> subprocess.Popen:
    """The worker in its own session, detached from our terminal (stdin/stdout are the handshake).

    `-P` and cwd=state_dir: nothing in the workspace (a planted `pydantic.py`) can shadow an import.
    """
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "unidesk_tui.worker", str(state_dir), job_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=state_dir,
        env=env,
        start_new_session=True,
        close_fds=True,
    )


def start(state_dir: Path, request: Request) -> list[str]:
    """Start the job's worker and wait until it holds the locks and recorded the job.

    Returns the stale locks it took over; raises the worker's refusal (`locked`) as UnideskError.
    """
    signals.hold()  # from the spawn on, an interrupt waits until the job id is printed
    proc = _spawn(state_dir, request.job.id)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(request.model_dump_json().encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the worker died at start; its answer (none) says so below
        line = proc.stdout.readline()
        proc.stdout.close()
    except BaseException:
        proc.kill()  # before an answer nothing is recorded, or the worker's own locks go stale with it
        raise
    try:
        answer = Answer.model_validate_json(line)
    except ValidationError:
        rc = proc.wait()
        why = f"job {request.job.id}: the worker exited ({rc}) before starting the job"
        raise UnideskError.of(ErrorCode.INTERNAL, why) from None
    if not answer.ok:
        proc.wait()
        raise UnideskError(
            *(
                Problem(ErrorCode(e["code"]), e["message"], service=e.get("service"), path=e.get("path"))
                for e in answer.errors
            )
        )
    log.info("job %s started: worker pid %d", request.job.id, proc.pid)
    return answer.takeovers


def reply(out: BinaryIO, answer: Answer) -> None:
    """Worker side: send the answer, then point stdout at /dev/null (the CLI may be gone)."""
    try:
        out.write((answer.model_dump_json() + "\n").encode())
        out.flush()
    except (BrokenPipeError, ValueError):
        pass  # the CLI is gone: the job runs all the same
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, out.fileno())
    os.close(devnull)


def _refusal(message: str) -> Answer:
    return Answer(ok=False, errors=[{"code": ErrorCode.INTERNAL, "message": message}])


def accept(
    state_dir: Path, job_id: str, request_data: bytes, remote_locks: Callable[[JobRecord, str], list[str]] | None = None
) -> tuple[JobRecord | None, Answer | None]:
    """Worker side: take the job's locks under our pid, then record the job. Returns the job (None
    when there is none to run) and the answer for the CLI (None for an incomplete request).

    `remote_locks(job, catalog JSON)`, before the local locks, takes the locks on the targets and
    returns its takeover messages; a `locked` refusal from it leaves no job and no lock. When the
    local locks then refuse, the caller releases the target locks (no job is returned)."""
    try:
        request = Request.model_validate_json(request_data)
    except (ValidationError, ValueError):
        log.warning("job %s: incomplete launch request (the CLI died); nothing recorded", job_id)
        return None, None
    if request.job.id != job_id:
        return None, _refusal("launch request for another job")
    pid = os.getpid()
    job = request.job.model_copy(update={"workerPid": pid, "workerStart": jobs.process_start(pid)})
    env = job.environment
    # The target locks first: a worker they refuse never held a local lock, so no other apply of this
    # state dir was told "locked by" a job that will not exist. A local refusal after them lets the
    # caller release the target locks (worker.main: no record, no lock).
    remote: list[str] = []
    if remote_locks is not None and not job.dryRun:
        try:
            remote = remote_locks(job, request.catalog)
        except UnideskError as exc:
            if any(p.code == ErrorCode.LOCKED for p in exc.problems):
                return None, Answer(ok=False, errors=[p.to_dict() for p in exc.problems if p.code == ErrorCode.LOCKED])
            # anything else (an unreachable target) the job itself meets and records
        except Exception:  # noqa: BLE001 — likewise: the engine tries again and records what it meets
            log.warning("job %s: taking the target locks before the answer failed", job_id, exc_info=True)
    try:
        takeovers = ([] if job.dryRun else locks.acquire(state_dir, env, job.services, job_id, pid=pid)) + remote
    except UnideskError as exc:
        return None, Answer(ok=False, errors=[p.to_dict() for p in exc.problems])
    try:
        job.warnings = list(job.warnings) + takeovers
        d = jobs.create_job(state_dir, job)
        atomic_write(d / jobs.CATALOG_FILE, request.catalog.encode())
        events = jobs.EventLog(state_dir, job_id)
        for message in takeovers:
            events.append(message, stream="engine")
        for event in request.events:
            events.append(event.text, service=event.service, stream="engine")
    except Exception as exc:
        if not job.dryRun:
            locks.release(state_dir, env, job.services, job_id)
        log.exception("job %s: cannot record the job", job_id)
        return None, _refusal(f"job {job_id}: cannot record the job: {exc}")
    return job, Answer(ok=True, takeovers=takeovers)
