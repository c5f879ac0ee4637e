"""The one typed way screens, widgets and palette providers reach the console app (textual types
`node.app` as App[object], which knows none of the console's own attributes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from textual.app import App

    from unidesk_tui.app import UnideskApp


class InApp(Protocol):
    @property
    def app(self) -> App[Any]: ...


def console_app(node: InApp) -> UnideskApp:
    """The UnideskApp `node` belongs to."""
    return cast("UnideskApp", node.app)
