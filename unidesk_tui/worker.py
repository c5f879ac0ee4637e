"""The detached job worker: `python -m unidesk_tui.worker <state-dir> <job-id>`.

Started by apply in its own session; runs the recorded job with the engine (engine.py).
Before the first step the engine takes the lock on each service's target host (target_locks.py),
held by its SSH session until the job ends. `jobs.cancel` (a request file, then SIGTERM) cancels
the job: the running step is stopped, its remote command killed on the target with its channel,
and the job recorded `cancelled` naming that step; the locks are released at the end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from unidesk_tui import jobs
from unidesk_tui.documents import JobRecord
from unidesk_tui.engine import JobEngine, PreLocked
from unidesk_tui.model import JobStatus

log = logging.getLogger(__name__)


async def _main(state_dir: Path, job_id: str, held: PreLocked | None = None) -> JobRecord:
    worker = JobEngine(state_dir, job_id, pre_locked=held)
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
    logging.basicConfig(
        level=os.environ.get("UNIDESK_LOG_LEVEL", "WARNING"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if len(argv) != 2:
        sys.stderr.write("usage: python -m unidesk_tui.worker <state-dir> <job-id>\n")
        return 2
    state_dir, job_id = Path(argv[0]), jobs.check_job_id(argv[1])
    from unidesk_tui import launch

    # One event loop for the target locks taken before answering and for the job: the SSH
    # sessions holding those locks must outlive the hand-over.
    loop = asyncio.new_event_loop()
    held = PreLocked(state_dir)
    try:
        record, answer = launch.accept(
            state_dir,
            job_id,
            sys.stdin.buffer.read(),
            remote_locks=lambda job, catalog: loop.run_until_complete(held.take(job, catalog)),
        )
        if answer is not None:
            launch.reply(sys.stdout.buffer, answer)
        if record is None:
            loop.run_until_complete(held.release())
            return 3  # refused or abandoned: no job, no lock
        stderr = os.open(
            jobs.job_dir(state_dir, job_id) / jobs.STDERR_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
        )
        os.dup2(stderr, 2)
        os.close(stderr)
        return run(state_dir, job_id, loop=loop, held=held)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def run(
    state_dir: Path, job_id: str, *, loop: asyncio.AbstractEventLoop | None = None, held: PreLocked | None = None
) -> int:
    """Run a recorded job to its end; 0 when it succeeded."""
    try:
        main_coro = _main(state_dir, job_id, held)
        record = loop.run_until_complete(main_coro) if loop is not None else asyncio.run(main_coro)
    except Exception as exc:  # the bookkeeping itself failed: leave a trace, the job reads as interrupted
        log.exception("worker for job %s failed", job_id)
        try:
            jobs.EventLog(state_dir, job_id).append(f"worker error: {type(exc).__name__}: {exc}", stream="engine")
        except Exception:
            pass
        return 1
    return 0 if record.status == JobStatus.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
