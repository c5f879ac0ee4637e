"""One apply per (environment, service): lock files under `<state dir>/locks/`.

A lock records the holder's pid (and its start time), job id, host and time. A lock whose holder is
dead, or whose job already ended, is stale and taken over (and logged); a live one refuses with
`locked`, naming the holder's job. Every check-and-take runs under one flock, so two appliers
never both win.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from unidesk_tui import jobs
from unidesk_tui.errors import ErrorCode, Problem, UnideskError
from unidesk_tui.files import atomic_write, flocked
from unidesk_tui.identifiers import is_service_id

log = logging.getLogger(__name__)

ENVIRONMENTS = ("file", "dev", "prod")


@dataclass(frozen=True)
class LockRecord:
    environment: str
    service: str
    pid: int
    pidStart: int | None
    jobId: str
    host: str
    time: str

    @property
    def key(self) -> str:
        return f"{self.environment}/{self.service}"


def locks_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "locks"


def lock_path(state_dir: Path, environment: str, service: str) -> Path:
    if environment not in ENVIRONMENTS or not is_service_id(service):
        raise ValueError(f"invalid lock key {environment!r}/{service!r}")
    return locks_dir(state_dir) / f"{environment}--{service}.lock"


def _guard(state_dir: Path):
    """Every check-and-take of locks runs under this one flock."""
    return flocked(locks_dir(state_dir) / ".guard")


def read_lock(state_dir: Path, environment: str, service: str) -> LockRecord | None:
    try:
        return LockRecord(**json.loads(lock_path(state_dir, environment, service).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        log.warning("unreadable lock %s/%s is treated as stale", environment, service)
        return LockRecord(environment, service, 0, None, "unknown", jobs.HOST, "")


def stale_reason(state_dir: Path, lock: LockRecord) -> str | None:
    """Why `lock` no longer protects anything, or None while its holder is live."""
    if lock.host == jobs.HOST and not jobs.process_alive(lock.pid, lock.pidStart):
        return f"holder pid {lock.pid} on {lock.host} is dead"
    if jobs.JOB_ID_RE.match(lock.jobId):
        try:
            job = jobs.load_job(state_dir, lock.jobId)
        except UnideskError:
            return None  # a live holder may still be writing its job (apply locks first)
        if job.status in jobs.TERMINAL:
            return f"job {lock.jobId} already ended ({job.status})"
    return None


def _write(state_dir: Path, lock: LockRecord) -> None:
    atomic_write(lock_path(state_dir, lock.environment, lock.service), (json.dumps(asdict(lock)) + "\n").encode())


def acquire(state_dir: Path, environment: str, services: list[str], job_id: str, pid: int | None = None) -> list[str]:
    """Take every (environment, service) lock for `job_id`, or none of them.

    Returns a message per stale lock taken over; raises `locked` naming each live holder's job.
    """
    pid = pid or os.getpid()
    takeovers: list[str] = []
    with _guard(state_dir):
        problems = []
        for service in services:
            held = read_lock(state_dir, environment, service)
            if held is None or held.jobId == job_id:
                continue
            reason = stale_reason(state_dir, held)
            if reason is None:
                problems.append(Problem(
                    ErrorCode.LOCKED,
                    f"{environment}/{service} is locked by job {held.jobId} (pid {held.pid} on {held.host} since {held.time})",
                    service=service,
                ))
            else:
                takeovers.append(f"took over the lock on {environment}/{service} from job {held.jobId}: {reason}")
        if problems:
            raise UnideskError(*problems)
        for service in services:
            _write(state_dir, LockRecord(environment, service, pid, jobs.process_start(pid), job_id, jobs.HOST, jobs.now_iso()))
    for message in takeovers:
        log.warning("%s", message)
    return takeovers


def transfer(state_dir: Path, environment: str, services: list[str], job_id: str, pid: int) -> None:
    """Hand the job's locks to another process (the worker), keeping everything else."""
    with _guard(state_dir):
        for service in services:
            held = read_lock(state_dir, environment, service)
            if held is not None and held.jobId == job_id:
                _write(state_dir, LockRecord(environment, service, pid, jobs.process_start(pid), job_id, jobs.HOST, held.time))


def release(state_dir: Path, environment: str, services: list[str], job_id: str) -> None:
    """Remove the locks that still name `job_id` (a taken-over lock is left to its new holder)."""
    with _guard(state_dir):
        for service in services:
            held = read_lock(state_dir, environment, service)
            if held is not None and held.jobId == job_id:
                lock_path(state_dir, environment, service).unlink(missing_ok=True)
