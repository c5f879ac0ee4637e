"""One job: per-step progress, the streaming log in per-step sections, and a plain verdict."""

from __future__ import annotations

import asyncio
import logging
import re

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.worker import Worker
from textual.widgets import Footer, Log, Static

from unidesk_tui import jobs
from unidesk_tui.documents import JobEvent, JobRecord
from unidesk_tui.messages import JobLogBatch
from unidesk_tui.widgets.job_steps import JobSteps
from unidesk_tui.widgets.present import JOB_STATUS, clock_text, duration_text, job_ended, job_started, parse_ts
from unidesk_tui.widgets.guard import guard_handlers

log = logging.getLogger(__name__)

POLL_S = 0.2
# While catching up: small batches often, so no single batch holds the loop for long.
BEHIND_POLL_S = 0.02
LOG_MAX_LINES = 20_000
# A reopened log starts from this many bytes before the end, not from the beginning of time.
REATTACH_TAIL_BYTES = 2 * 1024 * 1024
# At most this much log per batch, so one batch never holds the event loop for long.
BATCH_BYTES = 128 * 1024
STREAM_PREFIX = {"stdout": "  ", "stderr": "! ", "engine": "» "}


def verdict(job: JobRecord) -> Text | None:
    """Why a finished job failed, in plain words naming the step and layer that disagreed."""
    if job.status in jobs.ACTIVE or job.status == "succeeded":
        return None
    out = Text()
    failed = [s for s in job.steps if s.status == "failed"]
    for step in failed:
        message = step.message or step.code or "no message"
        if step.code == "verification_failed" or step.name.startswith("verify"):
            out.append(f"✗ verification failed for {step.service}: ", style="bold red")
            head, sep, layers = message.partition(": live runtime does not prove ")
            if sep:  # "<svc>: live runtime does not prove <sha>: <layer> is X, expected Y; ..."
                sha, _, detail = layers.partition(": ")
                out.append(f"the live runtime does not prove {sha[:12]}\n")
                for part in detail.split("; "):
                    layer, _, rest = part.partition(" is ")
                    out.append(f"   layer {layer}", style="bold")
                    out.append(f" disagrees: is {rest}\n" if rest else "\n")
                continue
        else:
            out.append(f"✗ {step.service} · {step.name} failed: ", style="bold red")
        out.append(f"{message}\n")
    errors = job.result.errors if job.result else []
    for err in errors:
        if any(err.message == s.message or err.code == s.code and err.service == s.service for s in failed):
            continue
        where = f"{err.service}: " if err.service else ""
        out.append(f"✗ {err.code}: ", style="bold red")
        out.append(f"{where}{err.message}\n")
    if not out.plain:
        symbol, style = JOB_STATUS.get(job.status, ("?", ""))
        out.append(f"{symbol} job {job.status}", style=style)
    out.rstrip()
    # 12 hex characters tell commits apart on screen; the full SHAs are in the log.
    return Text.assemble(*[(re.sub(r"\b([0-9a-f]{12})[0-9a-f]{28}\b", r"\1", span_text), style) for span_text, style in _spans(out)])


def _spans(text: Text) -> list[tuple[str, str]]:
    out, pos = [], 0
    for span in sorted(text.spans, key=lambda s: s.start):
        if span.start > pos:
            out.append((text.plain[pos:span.start], ""))
        out.append((text.plain[span.start:span.end], str(span.style)))
        pos = span.end
    if pos < len(text.plain):
        out.append((text.plain[pos:], ""))
    return out


def _log_size(state_dir, job_id: str) -> int:
    try:
        return (jobs.job_dir(state_dir, job_id) / jobs.EVENTS_FILE).stat().st_size
    except FileNotFoundError:
        return 0


@guard_handlers
class JobLogScreen(Screen[None]):
    """Streams one job's events from its log file; reattaches from the tail when reopened."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("J", "app.show_jobs", "Jobs"),
        Binding("G", "follow", "Follow"),
        Binding("g", "top", "Top", show=False),
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: JobRecord | None = None
        self._section: tuple[str | None, str | None] | None = None
        self.lines_written = 0
        self._shown_at = float("-inf")

    def compose(self) -> ComposeResult:
        yield Static(id="job-header")
        yield Static(id="job-verdict")
        with Horizontal(id="job-body"):
            yield JobSteps(id="job-steps")
            yield Log(id="job-log", max_lines=LOG_MAX_LINES, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#job-verdict").display = False
        self.stream()

    @work(exclusive=True, group="job-log", exit_on_error=False)
    async def stream(self) -> None:
        state_dir = self.app.workspace.state_dir
        # Start near the end of a long log: a partial first line is skipped by the reader.
        size = await asyncio.to_thread(_log_size, state_dir, self.job_id)
        offset = max(0, size - REATTACH_TAIL_BYTES)
        idle = 0
        job = None
        while True:
            events, new_offset = await asyncio.to_thread(jobs.read_events, state_dir, self.job_id, offset, BATCH_BYTES)
            behind = new_offset - offset >= BATCH_BYTES // 2  # more is waiting: read on without sleeping
            offset = new_offset
            if job is None or not behind:
                job = await asyncio.to_thread(jobs.load_job, state_dir, self.job_id)
            if events or job != self.job:
                self.post_message(JobLogBatch(self.job_id, events, job))
            if job.status not in jobs.ACTIVE and not events:
                idle += 1
                if idle > 2:  # one more read after the end, for lines written just before it
                    return
            await asyncio.sleep(BEHIND_POLL_S if behind else POLL_S)

    @on(JobLogBatch)
    async def _on_batch(self, message: JobLogBatch) -> None:
        if message.job_id != self.job_id:
            return
        if message.events:
            self.query_one(Log).write_lines(self._lines(message.events))
        if message.job is not None:
            now = self.app.clock()
            # Redraw the header and steps when the job changed, and once a second for elapsed times.
            if message.job != self.job or now - self._shown_at >= 1.0:
                if message.job.status in jobs.TERMINAL and (self.job is None or self.job.status not in jobs.TERMINAL):
                    self.app.poll_jobs()  # the grid's last-job cells must not wait for the next poll
                self.job = message.job
                self._shown_at = now
                await self._show_job(message.job)

    def _lines(self, events: list[JobEvent]) -> list[str]:
        out: list[str] = []
        for event in events:
            section = (event.service, event.step)
            if section != self._section:
                self._section = section
                title = " · ".join(p for p in section if p) or "job"
                out.append(f"━━ {title} " + "━" * max(3, 60 - len(title)))
            prefix = STREAM_PREFIX.get(event.stream, f"[{event.stream}] ")
            for line in event.text.split("\n"):
                if line.strip():  # build tools print blank separators; they only cost room
                    out.append(prefix + line)
        self.lines_written += len(out)
        return out

    async def _show_job(self, job: JobRecord) -> None:
        now = self.app.clock()
        symbol, style = JOB_STATUS.get(job.status, ("?", ""))
        header = Text()
        header.append(f" Job {job.id} ", style="bold reverse")
        header.append(f"  {symbol} {job.status}", style=style)
        header.append(f"   env {job.environment}   services {', '.join(job.services)}")
        flags = [name for name, on_ in (("dry-run", job.dryRun), ("force", job.force)) if on_]
        if flags:
            header.append(f"   [{' '.join(flags)}]", style="yellow")
        started = job_started(job)
        ended = job_ended(job)
        header.append("\n ")
        if started is not None:
            header.append(f"started {clock_text(started)}", style="dim")
            header.append(f"  elapsed {duration_text((ended if ended is not None else now) - started)}", style="dim")
        created = parse_ts(job.createdAt)
        if started is None and created is not None:
            header.append(f"created {clock_text(created)}", style="dim")
        if job.status in jobs.ACTIVE:
            header.append(f"   follow: unidesk job status {job.id} --tail-bytes 30000", style="dim")
        self.query_one("#job-header", Static).update(header)
        text = verdict(job)
        panel = self.query_one("#job-verdict", Static)
        panel.display = text is not None
        if text is not None:
            panel.update(text)
            panel.set_class(job.status == "failed", "-failed")
        await self.query_one(JobSteps).show(job, now)

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        self.app.report_worker(event)

    def action_follow(self) -> None:
        log_widget = self.query_one(Log)
        log_widget.auto_scroll = True
        log_widget.scroll_end(animate=False)

    def action_top(self) -> None:
        log_widget = self.query_one(Log)
        log_widget.auto_scroll = False
        log_widget.scroll_home(animate=False)
