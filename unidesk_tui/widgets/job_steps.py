"""One row per job step: status symbol, service · step, duration and a progress bar."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import ProgressBar, Static

from unidesk_tui.documents import JobRecord, StepRecord
from unidesk_tui.widgets.present import JOB_STATUS, Palette, duration_text, step_seconds


def step_key(step: StepRecord) -> str:
    return f"{step.service}/{step.name}"


class StepRow(Horizontal):
    """A step's label and bar: full when done, sweeping while running, empty while pending."""

    def __init__(self, step: StepRecord) -> None:
        super().__init__(classes="step-row")
        self.step = step
        self._status_shown: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(classes="step-label")
        yield ProgressBar(total=1, show_eta=False, show_percentage=False, classes="step-bar")

    def show(self, step: StepRecord, now: float) -> None:
        self.step = step
        symbol, style = JOB_STATUS.get(step.status, ("?", ""))
        label = Text()
        label.append(f"{symbol} ", style=Palette.of(self.app).style(style))
        label.append(f"{step.service} · {step.name}", style="bold" if step.status == "running" else "")
        label.append(f"  {duration_text(step_seconds(step, now))}", style="dim")
        self.query_one(".step-label", Static).update(label)
        if step.status == self._status_shown:
            return  # bar and classes only change with the status (restyling is not free)
        self._status_shown = step.status
        bar = self.query_one(ProgressBar)
        if step.status == "running":
            bar.update(total=None)
        elif step.status == "pending":
            bar.update(total=1, progress=0)
        else:
            bar.update(total=1, progress=1)
        for status in ("failed", "succeeded", "running", "skipped", "cancelled", "pending"):
            self.set_class(step.status == status, f"-{status}")


class JobSteps(VerticalScroll):
    """The step list of one job, kept in step order and updated in place."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._rows: dict[str, StepRow] = {}

    async def show(self, job: JobRecord, now: float) -> None:
        for step in job.steps:
            key = step_key(step)
            row = self._rows.get(key)
            if row is None:
                row = StepRow(step)
                self._rows[key] = row
                await self.mount(row)
            row.show(step, now)
