"""Locks on the target host: one apply per (environment, service) across controllers.

The local lock (locks.py) lives in one state directory, so two operators with separate checkouts
would not see each other. This lock lives on the service's target: a `flock` on
`<workDir>/locks/<environment>--<service>.lock`, held by a remote process that the job's own SSH
session keeps alive (a remote command dies with its channel, see targets.KILL_ON_CLOSE). So it is
released when the job ends, when its worker dies, or when the connection drops; nothing has to
clean it up. A holder file next to it names the job, controller host, worker pid and state dir.

A busy lock is refused with `locked`, naming its holder. A holder that is provably dead (on this
controller: its worker pid is gone or reused) while the remote lock process lingers (a half-open
connection the target has not noticed yet) is killed on the target and the lock taken over;
the takeover is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
from dataclasses import asdict, dataclass, field
from typing import Any

from unidesk_tui import jobs
from unidesk_tui.errors import ErrorCode, Problem, UnideskError
from unidesk_tui.identifiers import is_service_id
from unidesk_tui.targets import killable_command_line

log = logging.getLogger(__name__)

ACQUIRE_TIMEOUT = 15.0
HOLD_SECONDS = "2147483647"

# Run (via KILL_ON_CLOSE) as `sh -c HOLD sh LOCKFILE HOLDER_JSON`: take the flock on fd 9 without
# waiting, write the holder file (`<pid of this process group> <holder JSON>`), say so, then keep
# fd 9 open in `sleep` (the same pid, by exec) until the channel closes.
HOLD = (
    "set -e\n"
    'mkdir -p -- "$(dirname -- "$1")"\n'
    'exec 9>>"$1"\n'
    'if ! flock -n 9; then echo HELD; cat -- "$1.holder" 2>/dev/null || true; exit 75; fi\n'
    'printf \'%s %s\\n\' "$$" "$2" > "$1.holder.tmp"\n'
    'mv -f -- "$1.holder.tmp" "$1.holder"\n'
    "echo ACQUIRED\n"
    "exec sleep " + HOLD_SECONDS
)


@dataclass(frozen=True)
class Holder:
    """Who holds a target lock (the holder file's JSON)."""

    jobId: str
    controller: str
    pid: int
    pidStart: int | None
    stateDir: str
    since: str
    remotePid: int | None = None

    def describe(self) -> str:
        return (
            f"job {self.jobId} (controller {self.controller}, pid {self.pid}, state dir {self.stateDir}, since "
            f"{self.since})"
        )

    @classmethod
    def parse(cls, line: str) -> Holder | None:
        """A holder file's line, `<remote pid> <JSON>`; None when it is unreadable."""
        pid, _, text = line.strip().partition(" ")
        try:
            data = json.loads(text)
            fields = {k: data.get(k) for k in cls.__dataclass_fields__ if k != "remotePid"}
            return cls(**fields, remotePid=int(pid))
        except (ValueError, TypeError, AttributeError):
            return None


def lock_file(work_dir: str, environment: str, service: str) -> str:
    if environment not in ("file", "dev", "prod") or not is_service_id(service):
        raise ValueError(f"invalid target lock key {environment!r}/{service!r}")
    return posixpath.join(work_dir, "locks", f"{environment}--{service}.lock")


def holder_dead(holder: Holder) -> str | None:
    """Why `holder` is provably dead, from this controller; None when it may be alive."""
    if holder.controller != jobs.HOST:
        return None  # another controller's processes cannot be checked from here
    if not jobs.process_alive(holder.pid, holder.pidStart):
        return f"its worker pid {holder.pid} on {holder.controller} is gone"
    return None


@dataclass
class TargetLocks:
    """The target locks one job holds: remote processes on its SSH sessions."""

    held: list[tuple[str, str, Any]] = field(default_factory=list)  # (target id, key, SSH process)
    takeovers: list[str] = field(default_factory=list)

    async def release(self) -> None:
        """Close the lock processes' channels (the targets kill them, freeing the flocks)."""
        for _, _, proc in self.held:
            proc.close()
        for _, _, proc in self.held:
            try:
                await asyncio.wait_for(proc.wait_closed(), 5)
            except (TimeoutError, OSError, Exception):  # noqa: BLE001 — releasing must not fail the job
                log.debug("closing a target lock channel failed", exc_info=True)
        self.held.clear()


async def _try(session, path: str, holder: Holder):
    """(process holding the lock, None) or (None, current holder or None)."""
    record = {k: v for k, v in asdict(holder).items() if k != "remotePid"}
    argv = ["sh", "-c", HOLD, "sh", path, json.dumps(record, separators=(",", ":"))]
    proc = await session.conn.create_process(killable_command_line(argv), encoding="utf-8", errors="replace")
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), ACQUIRE_TIMEOUT)
        if first.strip() == "ACQUIRED":
            return proc, None
        rest = await asyncio.wait_for(proc.stdout.read(), ACQUIRE_TIMEOUT) if first.strip() == "HELD" else ""
        err = await asyncio.wait_for(proc.stderr.read(), 2) if first.strip() != "HELD" else ""
    except BaseException:
        proc.close()
        raise
    proc.close()
    if first.strip() != "HELD":
        raise UnideskError.of(
            ErrorCode.TARGET_UNREACHABLE,
            f"target {session.target.id}: cannot take the lock {path}: {(first + err).strip()[-300:] or 'no answer'}",
        )
    return None, Holder.parse(rest.strip()) if rest.strip() else None


async def acquire(
    pool, environment: str, services: dict[str, str], state_dir: str, pid: int, job_id: str
) -> TargetLocks:
    """Take the target lock of every (environment, service) of a job, or none of them.

    `services` maps service id -> target id. Raises UnideskError(locked) naming every live holder.
    """
    held = TargetLocks()
    problems: list[Problem] = []
    holder = Holder(job_id, jobs.HOST, pid, jobs.process_start(pid), str(state_dir), jobs.now_iso())
    try:
        for service, target_id in sorted(services.items()):
            session = await pool.session(target_id)
            path = lock_file(session.target.workDir, environment, service)
            proc, current = await _try(session, path, holder)
            if proc is None and current is not None and current.jobId != job_id and (why := holder_dead(current)):
                if current.remotePid:
                    await session.run(["kill", "-s", "KILL", "--", f"-{current.remotePid}"], timeout=15)
                message = (
                    f"took over the target lock on {environment}/{service} at {target_id} from "
                    f"{current.describe()}: {why}"
                )
                log.warning("%s", message)
                held.takeovers.append(message)
                for _ in range(20):  # the killed holder's flock goes with its process
                    proc, current = await _try(session, path, holder)
                    if proc is not None:
                        break
                    await asyncio.sleep(0.25)
            if proc is None:
                who = current.describe() if current else "another controller (no holder record)"
                problems.append(
                    Problem(
                        ErrorCode.LOCKED,
                        f"{environment}/{service} is locked on target {target_id} by {who}",
                        service=service,
                    )
                )
                continue
            held.held.append((target_id, f"{environment}/{service}", proc))
    except BaseException:
        await held.release()
        raise
    if problems:
        await held.release()
        raise UnideskError(*problems)
    return held
