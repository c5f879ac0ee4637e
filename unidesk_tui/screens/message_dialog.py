"""A modal that shows a message (an error, or a yes/no question) and waits for a key."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class MessageDialog(ModalScreen[bool]):
    """Title, body and a yes/no (or just ok) answer."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("enter", "answer(True)", "OK", show=False),
        Binding("n", "answer(False)", "No", show=False),
        Binding("escape", "answer(False)", "Close"),
    ]

    def __init__(
        self,
        title: str,
        body: str | Text,
        *,
        question: bool = False,
        error: bool = False,
        yes: str = "quit",
        no: str = "stay",
    ) -> None:
        super().__init__(classes="error" if error else "")
        self.title_text = title
        self.body = body
        self.question = question
        self.keys = f"y {yes}    n / esc {no}" if question else "enter / esc close"

    def compose(self) -> ComposeResult:
        with Vertical(id="message-dialog"):
            yield Static(Text(self.title_text, style="bold"), id="message-title")
            with VerticalScroll(id="message-scroll"):
                yield Static(self.body, id="message-body")
            yield Static(Text(self.keys, style="dim"), id="message-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes if self.question else True)
