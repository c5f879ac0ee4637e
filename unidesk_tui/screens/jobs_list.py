"""All jobs in the state directory, newest first, with their status; enter opens the log."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from unidesk_tui.documents import JobRecord
from unidesk_tui.jobs import operator_text
from unidesk_tui.screens.typed_app import console_app
from unidesk_tui.widgets.guard import guard_handlers, guarded
from unidesk_tui.widgets.present import (
    JOB_STATUS,
    PLAIN,
    Palette,
    age_text,
    duration_text,
    job_ended,
    job_shown_status,
    job_started,
    labelled,
)

COLUMNS = (
    ("id", "JOB"),
    ("status", "STATUS"),
    ("env", "ENV"),
    ("services", "SERVICES"),
    ("age", "WHEN"),
    ("took", "DURATION"),
    ("operator", "OPERATOR"),
    ("flags", "FLAGS"),
)


def job_cells(job: JobRecord, now: float, palette: Palette = PLAIN) -> dict[str, Text]:
    started, ended = job_started(job), job_ended(job)
    # A finished job counts from its end (a cancel from the cancel), a running one from its start.
    when = f"ended {age_text(ended, now)}" if ended is not None else f"started {age_text(started, now)}"
    took = (ended if ended is not None else now) - started if started is not None else None
    flags = " ".join(n for n, on in (("dry-run", job.dryRun), ("force", job.force)) if on)
    return {
        "id": Text(job.id, style="bold"),
        "status": labelled(JOB_STATUS, job_shown_status(job), palette=palette),
        "env": Text(job.environment, style=palette.style("bold $error") if job.environment == "prod" else ""),
        "services": Text(", ".join(job.services)),
        "age": Text(when),
        "took": Text(duration_text(took)),
        "operator": Text(operator_text(job.operator), style="dim"),
        "flags": Text(flags, style="yellow"),
    }


@guard_handlers
class JobsScreen(Screen[None]):
    """The job list, kept current from the app's job poller."""

    HELP_NAME = "the jobs list"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "open_log", "Open log"),
        Binding("l", "open_log", "Open log", show=False),
        Binding("c", "cancel_job", "Cancel job"),
        Binding("y", "yank", "Copy job id"),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Static(Text(" Jobs ", style="bold reverse"), id="jobs-title")
        yield DataTable(id="jobs-table", cursor_type="row")
        yield Static(id="jobs-empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.watch(self.app, "jobs", self._show, init=True)
        self.set_interval(1.0, lambda: self._show(console_app(self).jobs), name="tick")  # ages and durations move

    @guarded
    def _show(self, jobs_: list[JobRecord]) -> None:
        table = self.query_one(DataTable)
        now = console_app(self).clock()
        palette = Palette.of(self.app)
        keep = table.cursor_row
        with self.app.batch_update():
            present = {job.id for job in jobs_}
            for row_key in list(table.rows):
                if row_key.value not in present:
                    table.remove_row(row_key)
            for job in jobs_:
                cells = job_cells(job, now, palette)
                if job.id in table.rows:
                    for column, value in cells.items():
                        table.update_cell(job.id, column, value)
                else:
                    table.add_row(*(cells[c] for c, _ in COLUMNS), key=job.id)
            order = {job.id: i for i, job in enumerate(jobs_)}
            if table.row_count > 1:
                table.sort("id", key=lambda cell: order.get(cell.plain, 0))
            if table.row_count:
                table.move_cursor(row=min(keep, table.row_count - 1), scroll=False)
        self.query_one("#jobs-empty", Static).update(
            "" if jobs_ else Text(" no jobs yet: stage services with space and press a", style="dim")
        )

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()

    def selected_job(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        # The table takes enter (and clicks) itself: its selection opens the log.
        if event.row_key.value:
            console_app(self).open_job(event.row_key.value)

    def action_open_log(self) -> None:
        if (job_id := self.selected_job()) is not None:
            console_app(self).open_job(job_id)

    def action_cancel_job(self) -> None:
        if (job_id := self.selected_job()) is not None:
            console_app(self).confirm_cancel(job_id)

    def action_yank(self) -> None:
        if (job_id := self.selected_job()) is not None:
            console_app(self).yank(job_id)
