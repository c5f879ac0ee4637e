"""One apply per (environment, service): lock files under `<state dir>/locks/`.

A lock names its job and records the holder's pid (and its start time), host and time. The holder
is the job's worker from the start: the worker takes its own locks (unidesk_tui/launch.py), so no
lock is ever handed from one process to another. A lock is stale only when its job has ended, or
when both its holder and the job's recorded worker are provably dead (pid gone, or reused by
another process) and the job is not running; a stale lock is taken over (and logged), a live one
refuses with `locked`, naming the job. Every check-and-take runs under one flock, so two appliers
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
from unidesk_tui.model import JOB_TERMINAL, Environment

log = logging.getLogger(__name__)

ENVIRONMENTS: frozenset[str] = frozenset(Environment)  # lock scopes


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
    """Why `lock` no longer protects anything, or None while its job may still be running."""
    job = None
    if jobs.JOB_ID_RE.fullmatch(lock.jobId):
        try:
            job = jobs.load_job(state_dir, lock.jobId)  # records `interrupted` if its worker is dead
        except UnideskError:
            job = None  # never recorded (its worker died before creating it), or unreadable
    if job is not None and job.status in JOB_TERMINAL:
        return f"job {lock.jobId} already ended ({job.status})"
    if lock.host != jobs.HOST or jobs.process_alive(lock.pid, lock.pidStart):
        return None  # a live holder, or one on another host that cannot be checked from here
    if job is not None:
        return None  # still active: load_job found its worker alive
    return f"holder pid {lock.pid} on {lock.host} is dead and job {lock.jobId} was never recorded"


def held(state_dir: Path, environment: str, services: list[str]) -> list[Problem]:
    """`locked` problems for the services another live job holds; takes nothing (a fast pre-check)."""
    problems = []
    for service in services:
        lock = read_lock(state_dir, environment, service)
        if lock is not None and stale_reason(state_dir, lock) is None:
            problems.append(_locked(lock))
    return problems


def _locked(lock: LockRecord) -> Problem:
    return Problem(
        ErrorCode.LOCKED,
        f"{lock.key} is locked by job {lock.jobId} (pid {lock.pid} on {lock.host} since {lock.time})",
        service=lock.service,
    )


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
                problems.append(_locked(held))
            else:
                takeovers.append(f"took over the lock on {environment}/{service} from job {held.jobId}: {reason}")
        if problems:
            raise UnideskError(*problems)
        for service in services:
            _write(
                state_dir,
                LockRecord(environment, service, pid, jobs.process_start(pid), job_id, jobs.HOST, jobs.now_iso()),
            )
    for message in takeovers:
        log.warning("%s", message)
    return takeovers


def release(state_dir: Path, environment: str, services: list[str], job_id: str) -> None:
    """Remove the locks that still name `job_id` (a taken-over lock is left to its new holder)."""
    with _guard(state_dir):
        for service in services:
            held = read_lock(state_dir, environment, service)
            if held is not None and held.jobId == job_id:
                lock_path(state_dir, environment, service).unlink(missing_ok=True)
