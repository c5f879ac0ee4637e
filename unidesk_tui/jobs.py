"""The job store: `<state dir>/jobs/<id>/` holds job.json (rewritten atomically) and events.jsonl.

Read API for the CLI and the console: `list_jobs`, `load_job`, `read_events` (incremental, from a
byte offset) and `tail` (the last N bytes, whole lines, without reading the whole file); and
`cancel`. Loading a job
whose worker died reports it, and records it, as `interrupted`.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from unidesk_tui.documents import ErrorItem, JobEvent, JobRecord, JobResult, LogTail, Operator
from unidesk_tui.errors import ErrorCode, Problem, UnideskError
from unidesk_tui.files import atomic_write, flocked

# The layout of a job directory, ids and worker liveness live in job_files (no pydantic, for
# `job status`); the store's users reach them here too.
from unidesk_tui.job_files import EVENTS_FILE, HOST, JOB_FILE, job_dir, job_ids, tail_chunk, worker_dead
from unidesk_tui.job_files import JOB_ID_RE as JOB_ID_RE
from unidesk_tui.job_files import check_job_id as check_job_id
from unidesk_tui.job_files import jobs_root as jobs_root
from unidesk_tui.job_files import process_alive as process_alive
from unidesk_tui.job_files import process_start as process_start
from unidesk_tui.model import JOB_TERMINAL, JobStatus, Outcome, StepStatus
from unidesk_tui.redact import Redactor, secret_env_values

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.json"
STDERR_FILE = "worker.stderr"
CANCEL_FILE = "cancel.request"
MAX_EVENT_TEXT = 64 * 1024
DEFAULT_MAX_LOG_BYTES = 8 * 1024 * 1024  # config.json jobs.maxLogBytes
DEFAULT_KEEP_FINISHED = 100  # config.json jobs.keepFinished
MAX_READ_BYTES = 4 * 1024 * 1024


# -- time, ids, paths ----------------------------------------------------------------------------


def now_iso(ms: bool = False) -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S") + (f".{now.microsecond // 1000:03d}" if ms else "") + "Z"


def new_job_id(now: datetime | None = None) -> str:
    """Sortable by creation time to the millisecond: 20261127T081500Z-<3 hex of the ms><3 random hex>.
    The milliseconds keep jobs started within one second in order (prune's keep-N, job list)."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{now.microsecond // 1000:03x}{secrets.token_hex(2)[:3]}"


def current_operator(workspace: Path) -> Operator:
    """Who is starting a job here: the process's real user (from the password database, not the
    environment, which any caller sets), this host and the workspace."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without an entry (e.g. in a container)
        user = f"uid-{uid}"
    return Operator(user=user, host=HOST, workspace=str(Path(workspace).resolve()))


def operator_text(operator: Operator | None) -> str:
    """`user@host` for one-line displays; empty for a job recorded before operators were."""
    return f"{operator.user}@{operator.host}" if operator else ""


# -- job.json ------------------------------------------------------------------------------------


def _write(d: Path, record: JobRecord) -> None:
    atomic_write(d / JOB_FILE, (record.model_dump_json(indent=2) + "\n").encode())


def _read(d: Path, job_id: str) -> JobRecord:
    path = d / JOB_FILE
    try:
        return JobRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise UnideskError.of(ErrorCode.JOB_NOT_FOUND, f"no job {job_id}") from None
    except (OSError, ValidationError) as exc:  # a truncated or tampered state file, not a bug of ours
        why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else exc.strerror or str(exc)
        raise UnideskError.of(
            ErrorCode.JOB_UNREADABLE, f"job {job_id}: {path} is unreadable: {why}", path=str(path)
        ) from None


def create_job(state_dir: Path, record: JobRecord) -> Path:
    d = job_dir(state_dir, record.id)
    d.mkdir(parents=True, exist_ok=False)
    with flocked(d / ".lock"):  # read-modify-write of job.json across processes
        _write(d, record)
    return d


def update_job(state_dir: Path, job_id: str, change: Callable[[JobRecord], JobRecord | None]) -> JobRecord:
    """Apply `change` to the current record under the job's lock and write the result atomically."""
    d = job_dir(state_dir, job_id)
    with flocked(d / ".lock"):  # read-modify-write of job.json across processes
        record = _read(d, job_id)
        new = change(record) or record
        _write(d, new)
        return new


def _worker_dead(record: JobRecord) -> bool:
    return worker_dead(record.status, record.host, record.workerPid, record.workerStart)


def mark_interrupted(record: JobRecord, why: str) -> JobRecord:
    now = now_iso()
    services = dict(record.result.services) if record.result else {}
    for step in record.steps:
        if step.status == StepStatus.RUNNING:
            step.status, step.endedAt, step.code, step.message = StepStatus.FAILED, now, ErrorCode.INTERRUPTED, why
        if step.service not in services or services[step.service] not in (
            Outcome.SUCCEEDED,
            Outcome.SKIPPED,
            Outcome.DRY_RUN,
        ):
            if step.status in (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.FAILED):
                services[step.service] = Outcome.INTERRUPTED
    errors = list(record.result.errors) if record.result else []
    errors.append(ErrorItem(code=ErrorCode.INTERRUPTED, message=why))
    return record.model_copy(
        update={
            "status": JobStatus.INTERRUPTED,
            "endedAt": now,
            "result": JobResult(ok=False, services=services, errors=errors),
        }
    )


def load_job(state_dir: Path, job_id: str) -> JobRecord:
    """job.json; an active job whose worker is gone is recorded and returned as `interrupted`."""
    d = job_dir(state_dir, job_id)
    record = _read(d, job_id)
    if not _worker_dead(record):
        return record
    why = f"worker pid {record.workerPid} is gone; the job did not finish"

    def change(current: JobRecord) -> JobRecord | None:
        return mark_interrupted(current, why) if _worker_dead(current) else None

    record = update_job(state_dir, job_id, change)
    if record.status == JobStatus.INTERRUPTED:
        log.warning("job %s: %s", job_id, why)
        try:
            EventLog(state_dir, job_id).append(why, stream="engine")
        except OSError:
            pass
    return record


def cancel_requested(state_dir: Path, job_id: str) -> bool:
    """Whether `cancel` was asked for this job (the worker checks before it starts any step)."""
    return (job_dir(state_dir, job_id) / CANCEL_FILE).exists()


def cancel(state_dir: Path, job_id: str, *, wait: float = 0.0, poll: float = 0.1) -> JobRecord:
    """Cancel a queued or running job; returns its record (after at most `wait` seconds, sooner
    once the worker has recorded its end).

    The request is recorded in the job's directory first (a worker not yet running, or between
    steps, reads it), then the worker gets SIGTERM: it stops the current step, kills that step's
    remote command on the target, records `cancelled` naming the step and releases its locks.
    Raises UnideskError `job_not_found`, or `job_finished` for a job that already ended.
    """
    record = load_job(state_dir, job_id)
    if record.status in JOB_TERMINAL:
        raise UnideskError.of(
            ErrorCode.JOB_FINISHED,
            f"job {job_id} already ended ({record.status} at {record.endedAt or '?'}); there is nothing to cancel",
        )
    atomic_write(job_dir(state_dir, job_id) / CANCEL_FILE, f"{now_iso()} pid {os.getpid()} on {HOST}\n".encode())
    # Only a worker that recorded itself (status running) is signalled: a queued job's pid may
    # still be the launching command's own. The worker marks itself running before it reads the
    # request, and we read its status after writing the request, so one of us sees the other.
    record = load_job(state_dir, job_id)
    pid = record.workerPid
    if record.status == JobStatus.RUNNING and record.host == HOST and pid and process_alive(pid, record.workerStart):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        record = load_job(state_dir, job_id)
        if record.status in JOB_TERMINAL or time.monotonic() >= deadline:
            return record
        time.sleep(poll)


def list_jobs(state_dir: Path, unreadable: list[Problem] | None = None) -> list[JobRecord]:
    """Every readable job, newest first (ids sort by creation time); why each other job could not
    be read goes to `unreadable` (job_unreadable, naming its job.json)."""
    out = []
    for name in job_ids(state_dir):
        try:
            out.append(load_job(state_dir, name))
        except UnideskError as exc:
            log.warning("skipping job %s: %s", name, exc)
            if unreadable is not None:  # not job_not_found: a job being created has no job.json yet
                unreadable.extend(p for p in exc.problems if p.code == ErrorCode.JOB_UNREADABLE)
    return out


# -- retention -----------------------------------------------------------------------------------

DURATION_RE = re.compile(r"^([0-9]{1,9})([smhdw])$")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `12h`, `7d`, `2w` -> timedelta; UnideskError(usage) otherwise."""
    match = DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise UnideskError.of(
            ErrorCode.USAGE, f"{text!r} is not a duration (a number and one of s, m, h, d, w: e.g. 7d)"
        )
    return timedelta(seconds=int(match.group(1)) * DURATION_UNITS[match.group(2)])


def _ended(record: JobRecord) -> datetime | None:
    try:
        return datetime.strptime(record.endedAt or record.createdAt, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def prune(
    state_dir: Path,
    *,
    keep: int | None = None,
    older_than: timedelta | None = None,
    unreadable: list[Problem] | None = None,
) -> tuple[list[str], list[str]]:
    """Remove finished jobs; returns (removed ids, kept ids), newest first. Queued and running jobs
    are never removed. A finished job goes when it is not among the `keep` newest finished ones and
    (with `older_than`) ended longer ago than that; with neither given nothing is removed. A job
    whose job.json cannot be read is kept, and said so in `unreadable` (as list_jobs does)."""
    problems: list[Problem] = []
    records = list_jobs(state_dir, problems)  # newest first; a dead worker's job reads as interrupted
    if unreadable is not None:
        unreadable.extend(problems)
    unread = [Path(p.path).parent.name for p in problems if p.path]
    if keep is None and older_than is None:
        return [], sorted([r.id for r in records] + unread, reverse=True)
    now = datetime.now(UTC)
    removed: list[str] = []
    kept: list[str] = unread
    finished = 0
    for record in records:
        if record.status not in JOB_TERMINAL:
            kept.append(record.id)
            continue
        finished += 1
        beyond = keep is None or finished > keep
        ended = _ended(record)
        old = older_than is None or (ended is not None and now - ended > older_than)
        if not (beyond and old):
            kept.append(record.id)
            continue
        d = job_dir(state_dir, record.id)
        with flocked(d / ".lock"):  # never under a writer of job.json
            current = _read(d, record.id)
            if current.status not in JOB_TERMINAL:
                kept.append(record.id)
                continue
            # rename first: a reader never sees a half-removed job, a crash leaves only a dot dir
            doomed = d.with_name(f".pruned-{record.id}")
            os.replace(d, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(record.id)
    if removed:
        log.info("pruned %d finished job(s): %s", len(removed), ", ".join(removed))
    return removed, sorted(kept, reverse=True)


# -- the event log -------------------------------------------------------------------------------

TRIM_MARK = "…[log trimmed: "


class EventLog:
    """Appends redacted JSON-lines events; one writer process at a time (the worker), thread-safe.

    Bounded: past `max_bytes` the log is rewritten (atomically) as its head (the first eighth), one
    marker event saying which events were dropped, and its tail (the last half), so a runaway
    step never fills the disk and both how the job began and how it ended stay readable.
    """

    def __init__(
        self, state_dir: Path, job_id: str, redactor: Redactor | None = None, *, max_bytes: int = DEFAULT_MAX_LOG_BYTES
    ) -> None:
        self.path = job_dir(state_dir, job_id) / EVENTS_FILE
        self.redact = redactor or Redactor(secret_env_values())
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._seq = self._last_seq()
        try:
            self._size = self.path.stat().st_size
        except FileNotFoundError:
            self._size = 0

    def _last_seq(self) -> int:
        events = _tail_events(self.path, 64 * 1024)[0]
        return events[-1].seq if events else 0

    def append(
        self, text: str, *, step: str | None = None, service: str | None = None, stream: str = "stdout"
    ) -> JobEvent:
        text = self.redact(text.rstrip("\n"))
        if len(text) > MAX_EVENT_TEXT:
            text = text[:MAX_EVENT_TEXT] + " …[truncated]"
        with self._lock:
            self._seq += 1
            event = JobEvent(ts=now_iso(ms=True), seq=self._seq, step=step, service=service, stream=stream, text=text)
            line = (json.dumps(event.model_dump(), ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            # O_APPEND + one write per line: a concurrent reader never sees interleaved events.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
            self._size += len(line)
            if self._size > self.max_bytes:
                self._trim()
        return event

    def _trim(self) -> None:
        """Keep the head and the tail of the log, and one marker event in place of the middle."""
        data = self.path.read_bytes()
        lines = data.splitlines(keepends=True)
        head: list[bytes] = []
        size = 0
        for raw in lines:
            if size + len(raw) > self.max_bytes // 8 or TRIM_MARK.encode() in raw:
                break  # an earlier marker ends the head: everything after it was already the tail
            head.append(raw)
            size += len(raw)
        tail: list[bytes] = []
        size = 0
        for raw in reversed(lines[len(head) :]):
            if size + len(raw) > self.max_bytes // 2:
                break
            tail.append(raw)
            size += len(raw)
        tail.reverse()
        first, last = _seq_of(head[-1]) if head else 0, _seq_of(tail[0]) if tail else self._seq + 1
        dropped_bytes = len(data) - sum(map(len, head)) - sum(map(len, tail))
        text = (
            f"{TRIM_MARK}events {first + 1}–{last - 1} ({last - first - 1} events, {dropped_bytes} bytes) "
            "dropped; the head and tail are kept]…"
        )
        marker = JobEvent(ts=now_iso(ms=True), seq=first + 1 if first + 1 < last else last, stream="engine", text=text)
        body = b"".join(
            [*head, (json.dumps(marker.model_dump(), ensure_ascii=False, separators=(",", ":")) + "\n").encode(), *tail]
        )
        atomic_write(self.path, body)
        self._size = len(body)


def _seq_of(raw: bytes) -> int:
    try:
        return int(json.loads(raw)["seq"])
    except (ValueError, KeyError, TypeError):
        return 0


def trim_offset(state_dir: Path, job_id: str) -> int:
    """Byte offset of the log's trim marker (0 when it was never trimmed): where a follower whose
    offset lies beyond the trimmed log picks up again."""
    path = job_dir(state_dir, job_id) / EVENTS_FILE
    try:
        with open(path, "rb") as handle:
            offset = 0
            for raw in handle:
                if TRIM_MARK.encode() in raw:
                    return offset
                offset += len(raw)
    except FileNotFoundError:
        pass
    return 0


def _parse_lines(chunk: bytes) -> list[JobEvent]:
    events = []
    for raw in chunk.split(b"\n"):
        if not raw.strip():
            continue
        try:
            events.append(JobEvent.model_validate_json(raw))
        except ValidationError:
            log.debug("skipping an unreadable event line")
    return events


def read_events(
    state_dir: Path, job_id: str, offset: int = 0, max_bytes: int = MAX_READ_BYTES
) -> tuple[list[JobEvent], int]:
    """Whole events from byte `offset` on (at most ~max_bytes), and the offset to continue from.

    A line still being written (no newline yet) is left for the next call.
    """
    path = job_dir(state_dir, job_id) / EVENTS_FILE
    try:
        with open(path, "rb") as handle:
            if offset > os.fstat(handle.fileno()).st_size:  # the log was trimmed under us
                offset = trim_offset(state_dir, job_id)
            handle.seek(max(0, offset))
            chunk = handle.read(max_bytes)
    except FileNotFoundError:
        if not (job_dir(state_dir, job_id) / JOB_FILE).exists():
            raise UnideskError.of(ErrorCode.JOB_NOT_FOUND, f"no job {job_id}") from None
        return [], offset
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    return _parse_lines(chunk[: end + 1]), offset + end + 1


def _tail_events(path: Path, nbytes: int) -> tuple[list[JobEvent], int, int]:
    """(events, offset of the first returned line, file size), reading at most nbytes + 1."""
    chunk, first, size = tail_chunk(path, nbytes)
    return _parse_lines(chunk), first, size


def tail(state_dir: Path, job_id: str, nbytes: int) -> LogTail:
    """The last `nbytes` of the log as whole events, reading only that much of the file."""
    d = job_dir(state_dir, job_id)
    if not (d / JOB_FILE).exists():
        raise UnideskError.of(ErrorCode.JOB_NOT_FOUND, f"no job {job_id}")
    events, first, size = _tail_events(d / EVENTS_FILE, nbytes)
    return LogTail(size=size, offset=first, truncated=first > 0, events=events)
