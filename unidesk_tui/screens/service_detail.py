"""Everything known about one service: full SHAs, labels, annotations, env, health body, reason."""

from __future__ import annotations

import json
import logging

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from unidesk_tui.documents import JobRecord, PlanItem
from unidesk_tui.widgets.present import ACTIONS, HEALTH, STATES, labelled, row_state

log = logging.getLogger(__name__)


def detail_text(item: PlanItem, env_mode: bool, last_job: JobRecord | None) -> Text:
    out = Text()

    def field(name: str, value: object, style: str = "") -> None:
        out.append(f"{name:<18}", style="bold")
        out.append(f"{value if value not in (None, '') else '—'}\n", style=style)

    field("service", item.id)
    field("repository", item.repo)
    field("mode", item.mode)
    field("target", item.target)
    field("requested commit", item.requestedCommit)
    field("desired commit", item.commit)
    live = item.live
    field("running commit", live.commit if live else None, "" if not live or live.commit == item.commit else "yellow")
    out.append(f"{'state':<18}", style="bold")
    out.append(labelled(STATES, row_state(item, env_mode)))
    out.append("\n")
    out.append(f"{'health':<18}", style="bold")
    out.append(labelled(HEALTH, live.health) if live else Text("— (not read)", style="dim"))
    out.append("\n")
    if live and live.message:
        field("live message", live.message)
    out.append(f"{'planned action':<18}", style="bold")
    out.append(labelled(ACTIONS, item.action))
    out.append("\n")
    field("reason", item.reason)
    if item.imagePresent is not None:
        field("image present", "yes" if item.imagePresent else "no")
    if item.applyEnabled is not None:
        field("env apply enabled", "yes" if item.applyEnabled else "no")
    if last_job is not None:
        field("last job", f"{last_job.id} ({last_job.status})")
    evidence = live.evidence if live else {}
    if evidence:
        for key in sorted(evidence):
            out.append(f"\n{key}\n", style="bold underline")
            value = evidence[key]
            out.append(json.dumps(value, indent=2, sort_keys=True) if not isinstance(value, str) else value)
            out.append("\n")
    else:
        out.append("\nno runtime evidence (labels, env, annotations, health body) was read\n", style="dim")
    return out


class ServiceDetailScreen(ModalScreen[None]):
    """Read-only detail of one grid row; escape or enter closes it."""

    BINDINGS = [Binding("escape,enter,q", "dismiss_detail", "Close")]

    def __init__(self, item: PlanItem, env_mode: bool, last_job: JobRecord | None) -> None:
        super().__init__()
        self.item = item
        self.env_mode = env_mode
        self.last_job = last_job

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-dialog"):
            yield Static(Text(f"Service {self.item.id}", style="bold"), id="detail-title")
            with VerticalScroll(id="detail-body"):
                yield Static(detail_text(self.item, self.env_mode, self.last_job))

    def action_dismiss_detail(self) -> None:
        self.dismiss(None)
