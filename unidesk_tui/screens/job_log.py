"""One job: per-step progress, the streaming log in per-step sections, and a plain verdict.

The log is searchable (/ n N), wraps (w), shows timestamps (t), follows the end (f), goes full
screen (z), jumps to the failing step (!) and saves to a file (s)."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rich.highlighter import Highlighter
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input, Log, Static
from textual.worker import Worker

from unidesk_tui import jobs
from unidesk_tui.documents import JobEvent, JobRecord
from unidesk_tui.messages import JobLogBatch
from unidesk_tui.model import JOB_ACTIVE, JOB_TERMINAL, JobStatus, StepStatus
from unidesk_tui.screens.typed_app import console_app
from unidesk_tui.widgets.guard import guard_handlers
from unidesk_tui.widgets.job_steps import JobSteps
from unidesk_tui.widgets.present import (
    JOB_STATUS,
    PLAIN,
    Palette,
    clock_text,
    duration_text,
    job_ended,
    job_shown_status,
    job_started,
    parse_ts,
)

POLL_S = 0.2
# While catching up: small batches often, so no single batch holds the loop for long.
BEHIND_POLL_S = 0.02
LOG_MAX_LINES = 20_000
# A reopened log starts from this many bytes before the end, not from the beginning of time.
REATTACH_TAIL_BYTES = 2 * 1024 * 1024
# At most this much log per batch, so one batch never holds the event loop for long.
BATCH_BYTES = 128 * 1024
# Build tools print progress on stderr (BuildKit's `#8 DONE 0.0s`): stderr is not a warning by
# itself, so it looks like stdout; lines that read like errors are marked, whatever the stream.
STREAM_PREFIX = {"stdout": "  ", "stderr": "  ", "engine": "» "}
ERROR_LINE = re.compile(r"\b(error|fatal|failed|failure|denied|refused|panic|traceback|exception)\b|✗", re.IGNORECASE)
SECTION = "━━ "
NARROW = 120  # below this width the steps go above the log instead of beside it
MS_RAW = re.compile(r"\b(\d{4,}) ?ms\b")


@dataclass(frozen=True)
class Entry:
    """One log line as received (timestamps and wrapping are applied when shown)."""

    ts: str
    text: str
    section: bool = False


class LogHighlighter(Highlighter):
    """Marks error-like lines and the search term's matches."""

    def __init__(self) -> None:
        self.term = ""
        self.error_style = "bold red"
        self.match_style = "bold reverse"

    def highlight(self, text: Text) -> None:
        plain = text.plain
        if plain.startswith(SECTION):
            text.stylize("bold")
        elif ERROR_LINE.search(plain):
            text.stylize(self.error_style)
        if self.term:
            lower, term = plain.lower(), self.term
            start = lower.find(term)
            while start != -1:
                text.stylize(self.match_style, start, start + len(term))
                start = lower.find(term, start + len(term))


def humanize_ms(text: str) -> str:
    """`174996 ms` → `2m54s`: raw millisecond counts are hard to read."""
    return MS_RAW.sub(lambda m: duration_text(int(m.group(1)) / 1000), text)


class LogView(Log):
    """The job's log: keeps the received lines, and re-lays them out on wrap or timestamp toggles."""

    def __init__(self, **kwargs) -> None:
        super().__init__(highlight=True, **kwargs)
        self.highlighter: LogHighlighter = LogHighlighter()
        self.entries: deque[Entry] = deque(maxlen=LOG_MAX_LINES)
        self.wrap = False
        self.timestamps = False

    def shown(self, entry: Entry) -> list[str]:
        line = f"{entry.ts[11:19]} {entry.text}" if self.timestamps and entry.ts else entry.text
        width = max(20, self.scrollable_content_region.width - 1)
        if not self.wrap or len(line) <= width:
            return [line]
        return [line[i : i + width] for i in range(0, len(line), width)]

    def add(self, entries: list[Entry]) -> None:
        self.entries.extend(entries)
        self.write_lines([line for e in entries for line in self.shown(e)])

    def relayout(self) -> None:
        follow = self.auto_scroll
        self.clear()
        self.write_lines([line for e in self.entries for line in self.shown(e)])
        if not follow:
            self.auto_scroll = False

    def restyle(self) -> None:
        cache = getattr(self, "_render_line_cache", None)
        if cache is not None:
            cache.clear()
        self.refresh()

    def on_resize(self) -> None:
        if self.wrap:
            self.relayout()


def verdict(job: JobRecord) -> Text | None:
    """Why a finished job failed, in plain words naming the step and layer that disagreed."""
    if job.status in JOB_ACTIVE or job.status == JobStatus.SUCCEEDED:
        return None
    out = Text()
    failed = [s for s in job.steps if s.status == StepStatus.FAILED]
    for step in failed:
        message = step.message or step.code or "no message"
        wrong = [c for c in step.verification if not c.ok]
        if wrong:  # the verification step recorded its layers: name each that disagreed
            out.append(f"✗ verification failed for {step.service}: ", style=PLAIN.style("bold $error"))
            commit = next((i.commit for i in job.plan if i.id == step.service), None)
            out.append(f"the live runtime does not prove {(commit or '?')[:12]}\n")
            for c in wrong:
                out.append(f"   layer {c.layer} {c.what}", style="bold")
                out.append(f" disagrees: is {c.actual or 'absent'}, expected {c.expected}\n")
            continue
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
        out.append(f"{symbol} job {job.status}", style=PLAIN.style(style))
    out.rstrip()
    out = Text.assemble(*[(humanize_ms(t), st) for t, st in _spans(out)])
    # 12 hex characters tell commits apart on screen; the full SHAs are in the log.
    return Text.assemble(
        *[(re.sub(r"\b([0-9a-f]{12})[0-9a-f]{28}\b", r"\1", span_text), style) for span_text, style in _spans(out)]
    )


def _spans(text: Text) -> list[tuple[str, str]]:
    out, pos = [], 0
    for span in sorted(text.spans, key=lambda s: s.start):
        if span.start > pos:
            out.append((text.plain[pos : span.start], ""))
        out.append((text.plain[span.start : span.end], str(span.style)))
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

    HELP_NAME = "the job log"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("slash", "search", "Search"),
        Binding("n", "next_match", "Next match", show=False),
        Binding("N", "previous_match", "Previous match", show=False),
        Binding("f", "toggle_follow", "Follow"),
        Binding("w", "toggle_wrap", "Wrap"),
        Binding("t", "toggle_timestamps", "Times", show=False),
        Binding("z", "toggle_full", "Full screen"),
        Binding("exclamation_mark", "jump_failure", "Failing step", key_display="!"),
        Binding("s", "save", "Save", show=False),
        Binding("c", "cancel_job", "Cancel job"),  # shown while the job can still be cancelled
        Binding("y", "yank", "Copy job id", show=False),
        Binding("J", "app.show_jobs", "Jobs", show=False),
        Binding("G", "end", "End (follow)", show=False),
        Binding("g", "top", "Top", show=False),
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: JobRecord | None = None
        self._section: tuple[str | None, str | None] | None = None
        self.lines_written = 0
        self._shown_at = float("-inf")
        self.matches: list[int] = []
        self.match_index = -1

    def compose(self) -> ComposeResult:
        yield Static(id="job-header")
        yield Static(id="job-verdict")
        with Horizontal(id="job-body"):
            yield JobSteps(id="job-steps")
            yield LogView(id="job-log", max_lines=LOG_MAX_LINES, auto_scroll=True)
        yield Input(placeholder="search the log — enter finds, n / N next / previous, esc closes", id="log-search")
        yield Static(id="log-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#job-verdict").display = False
        self.query_one("#log-search").display = False
        log_view = self.query_one(LogView)
        palette = Palette.of(self.app)
        log_view.highlighter.error_style = palette.style("bold $error")
        log_view.highlighter.match_style = palette.style("bold reverse $warning")
        log_view.focus()  # arrows and page keys scroll the log at once, no Tab needed
        self._show_status()
        self.set_interval(1.0, self._tick, name="elapsed")
        self.stream()

    def on_resize(self) -> None:
        self.set_class(self.size.width < NARROW, "-narrow")

    async def _tick(self) -> None:
        if self.job is not None and self.job.status in JOB_ACTIVE:
            await self._show_job(self.job)  # elapsed times move even when no event arrives

    @work(exclusive=True, group="job-log", exit_on_error=False)
    async def stream(self) -> None:
        state_dir = console_app(self).workspace.state_dir
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
            if job.status not in JOB_ACTIVE and not events:
                idle += 1
                if idle > 2:  # one more read after the end, for lines written just before it
                    return
            await asyncio.sleep(BEHIND_POLL_S if behind else POLL_S)

    @on(JobLogBatch)
    async def _on_batch(self, message: JobLogBatch) -> None:
        if message.job_id != self.job_id:
            return
        if message.events:
            self.query_one(LogView).add(self._entries(message.events))
            if self.matches and self.query_one(LogView).highlighter.term:
                self._find(keep=True)
        if message.job is not None:
            now = console_app(self).clock()
            # Redraw the header and steps when the job changed, and once a second for elapsed times.
            if message.job != self.job or now - self._shown_at >= 1.0:
                if message.job.status in JOB_TERMINAL and (self.job is None or self.job.status not in JOB_TERMINAL):
                    console_app(self).poll_jobs()  # the grid's last-job cells must not wait for the next poll
                if self.job is None or message.job.status != self.job.status:
                    self.refresh_bindings()  # `c` shows only while the job can be cancelled
                self.job = message.job
                self._shown_at = now
                await self._show_job(message.job)

    def _entries(self, events: list[JobEvent]) -> list[Entry]:
        out: list[Entry] = []
        for event in events:
            section = (event.service, event.step)
            if section != self._section:
                self._section = section
                title = " · ".join(p for p in section if p) or "job"
                out.append(Entry(event.ts, f"{SECTION}{title} " + "━" * max(3, 60 - len(title)), section=True))
            prefix = STREAM_PREFIX.get(event.stream, f"[{event.stream}] ")
            for line in event.text.split("\n"):
                if line.strip():  # build tools print blank separators; they only cost room
                    out.append(Entry(event.ts, prefix + line))
        self.lines_written += len(out)
        return out

    async def _show_job(self, job: JobRecord) -> None:
        now = console_app(self).clock()
        palette = Palette.of(self.app)
        status = job_shown_status(job)
        symbol, style = JOB_STATUS.get(status, ("?", ""))
        header = Text()
        header.append(f" Job {job.id} ", style="bold reverse")
        header.append(f"  {symbol} {status}", style=palette.style(style))
        header.append(f"   env {job.environment}   services {', '.join(job.services)}")
        flags = [name for name, on_ in (("dry-run", job.dryRun), ("force", job.force)) if on_]
        if flags:
            header.append(f"   [{' '.join(flags)}]", style=palette.style("$warning"))
        started = job_started(job)
        ended = job_ended(job)
        header.append("\n ")
        if started is not None:
            header.append(f"started {clock_text(started)}", style="dim")
            header.append(f"  elapsed {duration_text((ended if ended is not None else now) - started)}", style="dim")
        created = parse_ts(job.createdAt)
        if started is None and created is not None:
            header.append(f"created {clock_text(created)}", style="dim")
        if job.status in JOB_ACTIVE:
            header.append(f"   follow: unidesk job status {job.id} --tail-bytes 30000", style="dim")
        self.query_one("#job-header", Static).update(header)
        text = verdict(job)
        panel = self.query_one("#job-verdict", Static)
        panel.display = text is not None and not self.has_class("-full")
        if text is not None:
            panel.update(text)
            panel.set_class(job.status == "failed", "-failed")
        await self.query_one(JobSteps).show(job, now)

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        console_app(self).report_worker(event)

    # -- the log's toggles ---------------------------------------------------------------------

    def _show_status(self, note: str = "") -> None:
        view = self.query_one(LogView)
        out = Text(" ")
        for name, on_ in (("follow", view.auto_scroll), ("wrap", view.wrap), ("times", view.timestamps)):
            out.append(f"{name} {'on' if on_ else 'off'}", style="bold" if on_ else "dim")
            out.append("  ")
        if view.highlighter.term:
            found = f"{self.match_index + 1}/{len(self.matches)}" if self.matches else "no match"
            out.append(f"search “{view.highlighter.term}”: {found}  ", style="bold")
        if note:
            out.append(note, style="italic")
        self.query_one("#log-status", Static).update(out)

    def action_back(self) -> None:
        box = self.query_one("#log-search", Input)
        if box.display:
            box.display = False
            self.query_one(LogView).focus()
            return
        self.app.pop_screen()

    def action_toggle_follow(self) -> None:
        view = self.query_one(LogView)
        view.auto_scroll = not view.auto_scroll
        if view.auto_scroll:
            view.scroll_end(animate=False)
        self._show_status()

    def action_toggle_wrap(self) -> None:
        view = self.query_one(LogView)
        view.wrap = not view.wrap
        view.relayout()
        self._refind()

    def action_toggle_timestamps(self) -> None:
        view = self.query_one(LogView)
        view.timestamps = not view.timestamps
        view.relayout()
        self._refind()

    def action_toggle_full(self) -> None:
        full = not self.has_class("-full")
        self.set_class(full, "-full")
        for selector in ("#job-header", "#job-steps"):
            self.query_one(selector).display = not full
        self.query_one("#job-verdict").display = not full and self.job is not None and verdict(self.job) is not None

    def action_end(self) -> None:
        view = self.query_one(LogView)
        view.auto_scroll = True
        view.scroll_end(animate=False)
        self._show_status()

    def action_top(self) -> None:
        view = self.query_one(LogView)
        view.auto_scroll = False
        view.scroll_home(animate=False)
        self._show_status()

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = True
        box.focus()

    @on(Input.Submitted, "#log-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        view = self.query_one(LogView)
        view.highlighter.term = event.value.strip().lower()
        event.input.display = False
        view.focus()
        view.restyle()
        self._find()

    def _refind(self) -> None:
        if self.query_one(LogView).highlighter.term:
            self._find()
        else:
            self._show_status()

    def _find(self, keep: bool = False) -> None:
        view = self.query_one(LogView)
        term = view.highlighter.term
        self.matches = [i for i, line in enumerate(view.lines) if term and term in line.lower()] if term else []
        if not keep:
            self.match_index = -1
            if self.matches:
                self._goto(len(self.matches) - 1)  # the newest match first: a log is read from its end
                return
        self._show_status()

    def _goto(self, index: int) -> None:
        if not self.matches:
            self._show_status("no match")
            return
        self.match_index = index % len(self.matches)
        self._scroll_to_line(self.matches[self.match_index])
        self._show_status()

    def _scroll_to_line(self, line: int) -> None:
        view = self.query_one(LogView)
        view.auto_scroll = False  # reading an earlier line: the end must not pull the view away
        view.scroll_to(y=max(0, line - view.scrollable_content_region.height // 3), animate=False)

    def action_next_match(self) -> None:
        self._goto(self.match_index + 1)

    def action_previous_match(self) -> None:
        self._goto(self.match_index - 1)

    def action_jump_failure(self) -> None:
        step = next((s for s in (self.job.steps if self.job else []) if s.status == "failed"), None)
        if step is None:
            self.app.notify("no step failed", timeout=2)
            return
        title = f"{SECTION}{step.service} · {step.name} "
        lines = self.query_one(LogView).lines
        at = next((i for i in range(len(lines) - 1, -1, -1) if title in lines[i]), None)
        if at is None:
            self.app.notify(f"{step.service} · {step.name} failed, but it wrote no log line", timeout=4)
            return
        self._scroll_to_line(at)
        self._show_status(f"failing step: {step.service} · {step.name}")

    def action_save(self) -> None:
        self._save(Path.cwd() / f"unidesk-job-{self.job_id}.log")

    @work(thread=True, group="save", exit_on_error=False)
    def _save(self, path: Path) -> None:
        state_dir = console_app(self).workspace.state_dir
        offset, count = 0, 0
        with open(path, "w", encoding="utf-8") as out:
            while True:  # the whole log from the file, not only what the view holds
                events, new_offset = jobs.read_events(state_dir, self.job_id, offset, BATCH_BYTES)
                for event in events:
                    for line in event.text.split("\n"):
                        out.write(
                            f"{event.ts} {event.stream:<6} "
                            f"{' · '.join(p for p in (event.service, event.step) if p)}: {line}\n"
                        )
                        count += 1
                if new_offset == offset:
                    break
                offset = new_offset
        self.app.call_from_thread(self.app.notify, f"saved {count} lines to {path}", title="Log saved", timeout=6)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # An ended job has nothing to cancel: `c` leaves the footer (a job not yet read keeps it).
        return not (action == "cancel_job" and self.job is not None and self.job.status in JOB_TERMINAL)

    def action_cancel_job(self) -> None:
        console_app(self).confirm_cancel(self.job_id)

    def action_yank(self) -> None:
        console_app(self).yank(self.job_id)
