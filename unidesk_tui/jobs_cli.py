"""CLI for jobs: `deploy apply`, `job status JOB_ID [--tail-bytes N]`, `job cancel JOB_ID`, `job prune` and `job list`.

Registered by cli.py's optional registrars, after `deploy` exists. Exit codes: apply 0 when the job
started (with --wait: 0 only when it succeeded), 1 otherwise; job status/list 0 when the document
was produced; job cancel 0 when the job was told to stop (its document shows the status reached).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from unidesk_tui.errors import ErrorCode, ExitCode, Problem, UnideskError
from unidesk_tui.workspace import Workspace

if TYPE_CHECKING:
    from unidesk_tui.documents import ApplyDocument, JobEvent

# `job status` and `job list` are polled by scripts and must start fast (bench/startup.py): this
# module loads without pydantic, and they answer from job_files' light readers; the typed job
# store (jobs, documents) is imported by the commands and cases that need it.

DEFAULT_TAIL_BYTES = 30000
MAX_TAIL_BYTES = 64 * 1024 * 1024
CANCEL_WAIT_S = 30.0


def _emit(doc) -> None:
    from unidesk_tui.cli import emit

    emit(doc)


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _tail_bytes(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 <= n <= MAX_TAIL_BYTES:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_TAIL_BYTES}")
    return n


def _progress_to_stderr(events: list[JobEvent]) -> None:
    """Human progress for --wait on a terminal; stdout stays one JSON document."""
    for e in events:
        where = "/".join(x for x in (e.service, e.step) if x)
        sys.stderr.write(f"{e.ts[11:19]} {where + ': ' if where else ''}{e.text}\n")
    sys.stderr.flush()


def finish_apply(
    doc: ApplyDocument, ws: Workspace, wait: bool, *, progress: bool = False, stop: Callable[[], bool] | None = None
) -> tuple[ApplyDocument, int]:
    """With --wait, follow the job (until it ends, or `stop` says so) and fold its state into the
    document; returns (doc, exit code)."""
    if not doc.ok or not doc.jobId:
        return doc, ExitCode.ERROR
    if not wait:
        return doc, ExitCode.OK
    from unidesk_tui.apply import wait_job
    from unidesk_tui.model import JobStatus

    record = wait_job(ws.state_dir, doc.jobId, on_events=_progress_to_stderr if progress else None, stop=stop)
    errors = list(record.result.errors) if record.result else []
    doc = doc.model_copy(
        update={"ok": record.status == JobStatus.SUCCEEDED, "status": record.status, "job": record, "errors": errors}
    )
    return doc, ExitCode.OK if record.status == JobStatus.SUCCEEDED else ExitCode.ERROR


def _usage(command: str, message: str) -> int:
    from unidesk_tui.documents import ErrorDocument, ErrorItem

    _emit(ErrorDocument(command=command, errors=[ErrorItem(code=ErrorCode.USAGE, message=message)]))
    return ExitCode.USAGE


def _held_at_once(args: argparse.Namespace, ws: Workspace) -> list[Problem]:
    """`locked` for services another live job holds, found before the planning, executor and SSH
    modules even load (issue 13: a refusal in well under 2 s under load). The services are the
    `--service` ones, or a file-mode manifest's; anything unclear is left to the full apply."""
    if args.dry_run or args.plan:
        return []
    ids = list(args.service or [])
    if not ids and not args.env:
        from unidesk_tui.manifest import parse_manifest

        try:
            ids = [s.id for s in parse_manifest(Path(args.file or ws.manifest_path).read_bytes()).services]
        except (OSError, UnideskError):
            return []
    from unidesk_tui import locks

    return locks.held(ws.state_dir, args.env or "file", ids)


def _apply(args: argparse.Namespace, ws: Workspace) -> int:
    from unidesk_tui import signals
    from unidesk_tui.documents import ApplyDocument, to_errors

    if held_now := _held_at_once(args, ws):
        _emit(ApplyDocument(ok=False, dryRun=args.dry_run, errors=to_errors(held_now)))
        return ExitCode.ERROR
    from unidesk_tui.apply import apply  # loads the plan and executors; `job status` stays light
    from unidesk_tui.live import read_live

    # An interrupt stops a plan; once the worker is spawned it waits until the job id is printed
    # (with --wait it ends the wait, not the job), so no job ever runs unnamed (issue 13).
    saved = None
    if args.plan:
        from unidesk_tui import plan_binding

        if args.service or args.force:
            return _usage(
                "apply", "--plan FILE applies the saved plan's own services and --force; drop --service/--force"
            )
        try:
            saved = plan_binding.read(args.plan)
        except UnideskError as exc:
            _emit(ApplyDocument(ok=False, dryRun=args.dry_run, errors=to_errors(exc.problems)))
            return ExitCode.ERROR
    with signals.interruptible() as held:
        env = saved.request.env if saved else args.env
        doc = apply(
            ws,
            file=args.file,
            env=args.env,
            services=args.service,
            dry_run=args.dry_run,
            force=args.force,
            read_live=None if env else read_live,
            saved=saved,
            no_restore=args.no_restore,
        )
        doc, code = finish_apply(doc, ws, args.wait, progress=sys.stderr.isatty(), stop=lambda: bool(held))
        _emit(doc)
    return signals.exit_code(held) or code


def _status(args: argparse.Namespace, ws: Workspace) -> int:
    from unidesk_tui import job_files

    if (text := job_files.status_text(ws.state_dir, args.job_id, args.tail_bytes)) is not None:
        _print(text)
        return ExitCode.OK
    # Not taken as is (a dead worker to record, an older record, an error): the typed store.
    from unidesk_tui.cli import configure_logging

    configure_logging()
    from unidesk_tui import jobs
    from unidesk_tui.documents import JobDocument, to_errors

    try:
        record = jobs.load_job(ws.state_dir, args.job_id)
        log_tail = jobs.tail(ws.state_dir, args.job_id, args.tail_bytes)
    except UnideskError as exc:
        _emit(JobDocument(ok=False, errors=to_errors(exc.problems)))
        return ExitCode.ERROR
    _emit(JobDocument(ok=True, job=record, log=log_tail))
    return ExitCode.OK


def _cancel(args: argparse.Namespace, ws: Workspace) -> int:
    from unidesk_tui import jobs
    from unidesk_tui.documents import JobDocument, to_errors

    try:
        record = jobs.cancel(ws.state_dir, args.job_id, wait=0.0 if args.no_wait else CANCEL_WAIT_S)
    except UnideskError as exc:
        _emit(JobDocument(ok=False, command="job cancel", errors=to_errors(exc.problems)))
        return ExitCode.ERROR
    _emit(JobDocument(ok=True, command="job cancel", job=record))
    return ExitCode.OK


def _keep(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def _duration(value: str):
    from unidesk_tui import jobs

    try:
        return jobs.parse_duration(value)
    except UnideskError as exc:
        raise argparse.ArgumentTypeError(exc.problems[0].message) from None


def _configured_keep(ws: Workspace) -> int:
    """config.json jobs.keepFinished, or the default when the catalog cannot be read."""
    try:
        return ws.catalog().jobs.keepFinished
    except (UnideskError, OSError):
        from unidesk_tui.jobs import DEFAULT_KEEP_FINISHED

        return DEFAULT_KEEP_FINISHED


def _prune(args: argparse.Namespace, ws: Workspace) -> int:
    from unidesk_tui import jobs
    from unidesk_tui.documents import JobPruneDocument, to_errors

    keep = args.keep if args.keep is not None or args.older_than is not None else _configured_keep(ws)
    unreadable: list[Problem] = []
    try:
        removed, kept = jobs.prune(ws.state_dir, keep=keep, older_than=args.older_than, unreadable=unreadable)
    except (UnideskError, OSError) as exc:
        problems = (
            exc.problems
            if isinstance(exc, UnideskError)
            else [Problem(ErrorCode.INTERNAL, f"pruning jobs failed: {exc}")]
        )
        _emit(JobPruneDocument(ok=False, errors=to_errors(problems)))
        return ExitCode.ERROR
    _emit(JobPruneDocument(ok=True, removed=removed, kept=kept, errors=to_errors(unreadable)))
    return ExitCode.OK


def _list(args: argparse.Namespace, ws: Workspace) -> int:
    from unidesk_tui import job_files

    if (text := job_files.list_text(ws.state_dir)) is not None:
        _print(text)
        return ExitCode.OK
    from unidesk_tui.cli import configure_logging

    configure_logging()
    from unidesk_tui import jobs
    from unidesk_tui.documents import JobListDocument, JobSummary, to_errors

    unreadable: list[Problem] = []
    summaries = [
        JobSummary(
            id=r.id,
            status=r.status,
            environment=r.environment,
            services=r.services,
            dryRun=r.dryRun,
            createdAt=r.createdAt,
            endedAt=r.endedAt,
            operator=r.operator,
        )
        for r in jobs.list_jobs(ws.state_dir, unreadable)
    ]
    _emit(JobListDocument(ok=True, jobs=summaries, errors=to_errors(unreadable)))
    return ExitCode.OK


def _deploy_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    deploy = sub.choices.get("deploy")
    if deploy is None:
        raise RuntimeError("jobs_cli.add_parser must run after the deploy registrar")
    return next(a for a in deploy._actions if isinstance(a, argparse._SubParsersAction))


def add_parser(sub: argparse._SubParsersAction) -> None:
    from unidesk_tui.cli import _service_id

    dsub = _deploy_subparsers(sub)
    p = dsub.add_parser("apply", help="start an asynchronous deploy job")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--file", help="manifest file (default: <workspace>/deploy.json)")
    # prod is accepted here so that the apply path itself refuses it with prod_apply_disabled.
    group.add_argument("--env", choices=["dev", "prod"], help="apply origin/deploy/dev (prod is refused)")
    group.add_argument(
        "--plan",
        metavar="FILE",
        help="apply a plan saved by deploy plan --out, only if the state it rests on is unchanged (else plan_stale)",
    )
    p.add_argument("--service", action="append", type=_service_id, metavar="ID", help="only this service (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="resolve the plan and record the steps; change nothing")
    p.add_argument("--force", action="store_true", help="rebuild and roll out even where the live commit matches")
    p.add_argument(
        "--no-restore", action="store_true", help="keep a failed version running for debugging (no automatic restore)"
    )
    p.add_argument("--wait", action="store_true", help="follow the job to its end; exit 0 only if it succeeded")
    p.set_defaults(handler=_apply, command_name="apply")

    job = sub.add_parser("job", help="deploy jobs: status, list, cancel, prune")
    jsub = job.add_subparsers(dest="job_command", required=True, parser_class=sub._parser_class)
    s = jsub.add_parser("status", help="job.json plus a bounded tail of its event log")
    s.add_argument("job_id", metavar="JOB_ID")
    s.add_argument(
        "--tail-bytes",
        type=_tail_bytes,
        default=DEFAULT_TAIL_BYTES,
        metavar="N",
        help=f"log bytes to return (default {DEFAULT_TAIL_BYTES})",
    )
    s.set_defaults(handler=_status, command_name="job status", logs_nothing=True)
    c = jsub.add_parser("cancel", help="stop a queued or running job (its remote command too); waits for its end")
    c.add_argument("job_id", metavar="JOB_ID")
    c.add_argument(
        "--no-wait", action="store_true", help="return once the worker was told, without waiting for its end"
    )
    c.set_defaults(handler=_cancel, command_name="job cancel")
    pr = jsub.add_parser("prune", help="remove finished jobs (never a queued or running one)")
    pr.add_argument(
        "--keep",
        type=_keep,
        metavar="N",
        help="keep the N newest finished jobs (default: config.json jobs.keepFinished)",
    )
    pr.add_argument(
        "--older-than",
        type=_duration,
        metavar="DURATION",
        help="remove only jobs that ended longer ago (e.g. 36h, 7d, 2w)",
    )
    pr.set_defaults(handler=_prune, command_name="job prune")
    ls = jsub.add_parser("list", help="every job, newest first")
    ls.set_defaults(handler=_list, command_name="job list", logs_nothing=True)
