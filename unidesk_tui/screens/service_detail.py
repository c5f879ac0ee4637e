"""Everything known about one service: the deciding layers first (each beside the desired commit),
the plan, the service's job history, then the raw runtime evidence."""

from __future__ import annotations

import json

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from unidesk_tui.documents import JobRecord, PlanItem
from unidesk_tui.model import Environment
from unidesk_tui.screens.typed_app import console_app
from unidesk_tui.widgets.guard import guard_handlers
from unidesk_tui.widgets.present import (
    ACTIONS,
    CHANGED_STYLE,
    HEALTH,
    JOB_STATUS,
    PLAIN,
    STATES,
    Palette,
    age_text,
    duration_text,
    job_ended,
    job_reason,
    job_shown_status,
    job_started,
    job_when,
    labelled,
    row_state,
    short,
)

HISTORY_SHOWN = 10


def job_commit(job: JobRecord, service_id: str) -> str | None:
    """The commit a job deployed (or tried to) for one service, from the plan it ran."""
    return next((i.commit for i in job.plan if i.id == service_id), None)


def layers_text(item: PlanItem, palette: Palette = PLAIN) -> Text:
    """Each layer's commit beside the desired one: the part of the evidence that decides the state."""
    out = Text()
    layers = (item.live.evidence.get("layers") if item.live else None) or {}
    desired = item.commit
    width = max([12, *(len(name) for name in layers)]) + 2  # k3s layer names ("frontend-dev env") are long
    out.append(f"{'desired':<{width}}", style="bold")
    out.append(f"{short(desired, 12)}\n")
    if not layers:
        out.append("no layer was read (the runtime was not reached, or nothing of it exists)\n", style="dim")
        return out
    for name, commit in layers.items():
        out.append(f"{name:<{width}}", style="bold")
        if commit is None:
            out.append(f"{'—':<14}", style="dim")
            out.append("✗ not stamped\n", style=palette.style("$error"))
        elif commit == desired:
            out.append(f"{short(commit, 12):<14}")
            out.append("✓ = desired\n", style=palette.style("$success"))
        else:
            out.append(f"{short(commit, 12):<14}", style=palette.style(CHANGED_STYLE))
            out.append("≠ desired\n", style=palette.style(CHANGED_STYLE))
    return out


def history_line(job: JobRecord, service_id: str, now: float, palette: Palette = PLAIN) -> Text:
    status = job_shown_status(job)
    symbol, style = JOB_STATUS.get(status, ("?", ""))
    result = (job.result.services.get(service_id) if job.result else None) or status
    out = Text()
    out.append(f"{symbol} {result:<11}", style=palette.style(style))
    out.append(f" {short(job_commit(job, service_id), 12):<13}")
    out.append(f"{job.id}  {age_text(job_when(job), now)}", style="dim")
    if job.force:
        out.append("  force", style="dim")
    return out


def detail_text(
    item: PlanItem,
    env_mode: bool,
    history: list[JobRecord],
    palette: Palette = PLAIN,
    *,
    now: float = 0.0,
    with_history: bool = True,
) -> Text:
    out = Text()
    live = item.live
    state = row_state(item, env_mode)
    out.append(f"{item.id}  ", style="bold")
    out.append(labelled(STATES, state, palette=palette))
    out.append("  ")
    out.append(labelled(ACTIONS, item.action, palette=palette))
    out.append("\n")
    out.append(f"{item.reason}\n\n", style="dim")
    out.append("Layers\n", style="bold underline")
    out.append(layers_text(item, palette))
    if live and live.message:
        out.append(f"{'live says':<14}", style="bold")
        out.append(f"{live.message}\n")

    def field(name: str, value: object, style: str = "") -> None:
        out.append(f"{name:<18}", style="bold")
        out.append(f"{value if value not in (None, '') else '—'}\n", style=style)

    out.append("\nService\n", style="bold underline")
    field("repository", item.repo)
    field("mode · target", f"{item.mode or '—'} · {item.target or '—'}")
    field("requested commit", item.requestedCommit)
    field("desired commit", item.commit)
    field(
        "running commit",
        live.commit if live else None,
        "" if not live or live.commit == item.commit else palette.style(CHANGED_STYLE),
    )
    out.append(f"{'health':<18}", style="bold")
    if live is None:
        out.append(Text("— (not read)", style="dim"))
    elif state in ("missing", "unreachable", "runtime-unreachable") and live.health != "unknown":
        out.append(
            Text(
                f"— (the health path answered {live.health}, but no runtime of this service exists: "
                "the answer comes from something else)",
                style="dim",
            )
        )
    else:
        out.append(labelled(HEALTH, live.health, palette=palette))
    out.append("\n")
    if item.imagePresent is not None:
        field("image present", "yes" if item.imagePresent else "no")
    if item.applyEnabled is not None:
        field("env apply enabled", "yes" if item.applyEnabled else "no")
    if with_history:
        out.append("\nHistory\n", style="bold underline")
        if not history:
            out.append("no job touched this service here yet\n", style="dim")
        for job in history[:HISTORY_SHOWN]:
            out.append(history_line(job, item.id, now, palette))
            out.append("\n")
    last = history[0] if history else None
    if last is not None and (reason := job_reason(last)):
        out.append("last job: ", style="bold")
        out.append(f"{reason}\n", style=palette.style("$error"))
    evidence = {k: v for k, v in (live.evidence if live else {}).items() if k != "layers"}
    out.append("\nEvidence\n", style="bold underline")
    if not evidence:
        out.append("no runtime evidence (labels, env, annotations, health body) was read\n", style="dim")
    for key in sorted(evidence):
        value = evidence[key]
        out.append(f"{key}: ", style="bold")
        out.append((json.dumps(value, indent=2, sort_keys=True) if not isinstance(value, str) else value) + "\n")
    return out


def job_summary(job: JobRecord, now: float, palette: Palette = PLAIN) -> Text:
    """The side pane's view of a running job: its steps and where it is."""
    out = Text()
    status = job_shown_status(job)
    symbol, style = JOB_STATUS.get(status, ("?", ""))
    out.append(f"job {job.id}\n", style="bold")
    out.append(f"{symbol} {status}", style=palette.style(style))
    started, ended = job_started(job), job_ended(job)
    if started is not None:
        out.append(f" · {duration_text((ended or now) - started)}", style="dim")
    out.append(f"\n{job.environment} · {', '.join(job.services)}\n\n")
    for step in job.steps:
        symbol, style = JOB_STATUS.get(step.status, ("?", ""))
        out.append(f"{symbol} ", style=palette.style(style))
        out.append(f"{step.service} · {step.name}\n", style="bold" if step.status == "running" else "")
    out.append("\nl log · c cancel · J jobs", style="dim")
    return out


@guard_handlers
class ServiceDetailScreen(ModalScreen[None]):
    """One grid row in full, with its job history: enter opens a job's log, R redeploys its commit."""

    BINDINGS = [
        Binding("escape", "dismiss_detail", "Close"),
        Binding("d,equals_sign", "diff", "Diff", key_display="d"),
        Binding("R", "redeploy", "Redeploy this job's commit"),
        Binding("y", "yank", "Copy SHA"),
    ]

    def __init__(self, item: PlanItem, environment: Environment) -> None:
        super().__init__()
        self.item = item
        self.environment = environment
        self.history: list[JobRecord] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-dialog"):
            yield Static(Text(f"Service {self.item.id}", style="bold"), id="detail-title")
            with VerticalScroll(id="detail-body"):
                yield Static(id="detail-text")
            yield Static(
                Text("History — enter: job log · R: redeploy its commit · y: copy its SHA", style="bold"),
                id="history-title",
            )
            yield OptionList(id="history")

    def on_mount(self) -> None:
        main = console_app(self).main_screen
        self.history = main.service_jobs(self.item.id) if main is not None else []
        palette = Palette.of(self.app)
        now = console_app(self).clock()
        self.query_one("#detail-text", Static).update(
            detail_text(self.item, self.environment.named, self.history, palette, now=now, with_history=False)
        )
        options = self.query_one("#history", OptionList)
        options.add_options(
            [Option(history_line(j, self.item.id, now, palette), id=j.id) for j in self.history[:HISTORY_SHOWN]]
        )
        if not self.history:
            options.add_option(Option(Text("no job touched this service here yet", style="dim"), disabled=True))
        else:
            options.highlighted = 0
        options.focus()

    def _selected(self) -> JobRecord | None:
        options = self.query_one("#history", OptionList)
        if options.highlighted is None or options.highlighted >= len(self.history):
            return None
        return self.history[options.highlighted]

    @on(OptionList.OptionSelected, "#history")
    def _open(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            console_app(self).open_job(event.option.id)

    def action_dismiss_detail(self) -> None:
        self.dismiss(None)

    def action_diff(self) -> None:
        from unidesk_tui.screens.diff import DiffScreen

        self.app.push_screen(DiffScreen(self.item, self.environment))

    def action_yank(self) -> None:
        job = self._selected()
        sha = job_commit(job, self.item.id) if job else self.item.commit
        if sha:
            console_app(self).yank(sha)

    def action_redeploy(self) -> None:
        from unidesk_tui.screens.message_dialog import MessageDialog

        job = self._selected()
        sha = job_commit(job, self.item.id) if job else None
        if job is None or sha is None:
            self.app.notify("select a job of this service in the history first", timeout=3)
            return
        if sha == self.item.commit:
            main = console_app(self).main_screen
            self.dismiss(None)
            if main is not None:
                main.stage_redeploy(self.item.id)
            return
        self.app.push_screen(
            MessageDialog(
                f"{short(sha, 12)} is not the commit the manifest names",
                redeploy_hint(self.item, sha, self.environment),
            )
        )


def redeploy_hint(item: PlanItem, sha: str, environment: Environment) -> str:
    """How to make the manifest name an earlier commit (a deploy only ever runs what it names)."""
    now = f"{item.id} is at {short(item.commit, 12)} in the manifest; a deploy runs only the commit the manifest names."
    if not environment.named:
        how = (
            f'To redeploy {sha}:\n  1. set "commitId": "{sha}" for {item.id} in deploy.json\n'
            "  2. r refreshes the grid, then stage it (space) and apply (a)."
        )
    else:
        how = (
            f'To redeploy {sha} in {environment}:\n  1. commit deploy.json with "commitId": "{sha}" for {item.id}\n'
            f"     and push it to the deploy/{environment} branch\n  2. r refreshes the grid, then stage it (space) "
            "and apply (a)."
        )
    return f"{now}\n\n{how}"
