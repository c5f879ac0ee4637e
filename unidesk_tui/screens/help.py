"""Key help: every binding of the console, grouped the way k9s and lazydocker users expect."""

from __future__ import annotations

import logging

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

log = logging.getLogger(__name__)

KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Navigate", (("j / k / ↑ / ↓", "move"), ("g / G", "first / last row"), ("enter", "service detail"),
                  ("/", "filter (esc clears)"), ("s / S", "sort by next column / reverse"), ("ctrl+p or :", "command palette: services, jobs"))),
    ("Environment", (("1 / 2 / 3", "local file / dev / prod"), ("e", "next environment"), ("r", "refresh now"))),
    ("Plan & apply", (("space", "stage / unstage service"), ("f", "toggle force"), ("d", "toggle dry-run"),
                      ("a", "apply staged (asks y / n first)"), ("x", "clear staged"))),
    ("Jobs", (("J", "jobs list"), ("l", "log of the selected service's last job"), ("esc", "back"))),
    ("General", (("?", "this help"), ("q / ctrl+c", "quit (running jobs continue)"))),
)


def help_text(refresh_interval: float | None = None) -> Text:
    out = Text()
    for group, keys in KEYS:
        out.append(f"{group}\n", style="bold underline")
        for key, what in keys:
            out.append(f"  {key:<16}", style="bold cyan")
            out.append(f"{what}\n")
        out.append("\n")
    out.append("States: ✓ in-sync  ≠ drift  ∅ missing  ⚠ provenance-mismatch  ⊘ unreachable  – unsupported  ✗ error  ◇ planned (env dry-run)\n", style="dim")
    out.append("Health: + healthy  ! unhealthy  ? unknown\n", style="dim")
    if refresh_interval:
        out.append(f"The grid refreshes every {refresh_interval:g} s in the background (UNIDESK_REFRESH_S) and on r.", style="dim")
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Static(Text("unidesk console — keys", style="bold"), id="help-title")
            with VerticalScroll():
                yield Static(help_text(getattr(self.app, "refresh_interval", None)))

    def action_close(self) -> None:
        self.dismiss(None)
