"""Key help for the screen it was opened from: that screen's bindings (with its focused widget's),
then the console-wide ones; the main screen adds the legend of states."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from unidesk_tui.widgets.present import HEALTH, STATE_ORDER, STATES, Palette

# Bindings that are mechanics, not features worth a help line.
HIDDEN_ACTIONS = {
    "app.help",
    "help",
    "focus_next",
    "focus_previous",
    "scroll_up",
    "scroll_down",
    "scroll_left",
    "scroll_right",
    "scroll_home",
    "scroll_end",
    "page_up",
    "page_down",
    "page_left",
    "page_right",
}


def key_label(app, binding: Binding) -> str:
    return binding.key_display or app.get_key_display(binding)


def help_text(screen: Screen, refresh_interval: float | None = None) -> Text:
    app = screen.app
    palette = Palette.of(app)
    seen: dict[str, list[str]] = {}  # description -> keys, so aliases share a line
    groups: dict[str, dict[str, list[str]]] = {"This screen": {}, "Everywhere": {}}
    for _key, active in screen.active_bindings.items():
        binding = active.binding
        if binding.action in HIDDEN_ACTIONS or not binding.description:
            continue
        group = "Everywhere" if active.node is app else "This screen"
        keys = groups[group].setdefault(binding.description, [])
        label = key_label(app, binding)
        if label not in keys:
            keys.append(label)
        seen[binding.description] = keys
    out = Text()
    for group, entries in groups.items():
        if not entries:
            continue
        out.append(f"{group}\n", style="bold underline")
        for description, keys in entries.items():
            out.append(f"  {' / '.join(keys):<16}", style=palette.style("bold $primary"))
            out.append(f"{description}\n")
        out.append("\n")
    from unidesk_tui.screens.main import MainScreen

    if isinstance(screen, MainScreen):
        out.append("States\n", style="bold underline")
        for state in STATE_ORDER:
            symbol, style = STATES[state]
            out.append(f"  {symbol} {state}", style=palette.style(style))
        out.append("\nHealth\n", style="bold underline")
        for name, (symbol, style) in HEALTH.items():
            out.append(f"  {symbol} {name}", style=palette.style(style))
        out.append("\n")
        if refresh_interval:
            out.append(
                f"\nThe grid refreshes every {refresh_interval:g} s in the background (UNIDESK_REFRESH_S) and on r;\n"
                "each host's rows update as soon as that host answers (⟳ marks rows still waiting).",
                style="dim",
            )
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark", "close", "Close")]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.about = screen

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            name = getattr(self.about, "HELP_NAME", type(self.about).__name__.removesuffix("Screen"))
            yield Static(Text(f"unidesk console — keys of {name}", style="bold"), id="help-title")
            with VerticalScroll():
                yield Static(help_text(self.about, getattr(self.app, "refresh_interval", None)))

    def action_close(self) -> None:
        self.dismiss(None)
