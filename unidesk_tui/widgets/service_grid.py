"""The live service grid: one row per service, keyed by service id, updated cell by cell."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from unidesk_tui.documents import JobRecord, PlanItem
from unidesk_tui.widgets.present import HEALTH, STATES, labelled, last_job_cell, row_state, short

log = logging.getLogger(__name__)

# (key, label) in display order. "mark" shows whether the row is staged in the plan pane.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("mark", " "),
    ("id", "SERVICE"),
    ("mode", "MODE"),
    ("target", "TARGET"),
    ("desired", "DESIRED"),
    ("running", "RUNNING"),
    ("state", "STATE"),
    ("health", "HEALTH"),
    ("job", "LAST JOB"),
)
SORTABLE: tuple[str, ...] = ("id", "mode", "target", "state", "health", "job")
# Worst first when sorting by state: what needs attention floats up.
STATE_RANK = {name: i for i, name in enumerate(("error", "unreachable", "provenance-mismatch", "missing", "drift", "planned", "not-read", "unsupported", "in-sync"))}


def row_cells(item: PlanItem, *, env_mode: bool, staged: bool, last_job: JobRecord | None, now: float) -> dict[str, Text]:
    """The cells of one service's row."""
    state = row_state(item, env_mode)
    health = item.live.health if item.live else "unknown"
    running = item.live.commit if item.live else None
    running_style = "" if running is None or running == item.commit else "yellow"
    return {
        "mark": Text("●", style="bold cyan") if staged else Text(" "),
        "id": Text(item.id, style="bold"),
        "mode": Text(item.mode or "—"),
        "target": Text(item.target or "—"),
        "desired": Text(short(item.commit or item.requestedCommit)),
        "running": Text(short(running), style=running_style),
        "state": labelled(STATES, state),
        "health": labelled(HEALTH, health) if item.live else Text("—", style="dim"),
        "job": last_job_cell(last_job, now),
    }


def _plain(cell: Text) -> tuple[str, str]:
    return cell.plain, str(cell.style)


class ServiceGrid(DataTable):
    """A DataTable that is only ever synced by key: rows are never cleared, so the cursor,
    the scroll position and the selection survive every refresh."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._shown: dict[str, dict[str, tuple[str, str]]] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # cursor outside the rows while they change
            return None

    def sync(self, rows: dict[str, dict[str, Text]], order: Iterable[str]) -> None:
        """Make the table show exactly `rows`, in `order`, touching only what changed."""
        keep = self.selected_id
        order = [k for k in order if k in rows]
        with self.app.batch_update():
            for gone in [k for k in self._shown if k not in rows]:
                self.remove_row(gone)
                del self._shown[gone]
            for key in order:
                cells = rows[key]
                shown = self._shown.get(key)
                if shown is None:
                    self.add_row(*(cells[c] for c, _ in COLUMNS), key=key)
                    self._shown[key] = {c: _plain(v) for c, v in cells.items()}
                    continue
                for column, value in cells.items():
                    plain = _plain(value)
                    if shown.get(column) != plain:
                        self.update_cell(key, column, value, update_width=True)
                        shown[column] = plain
            rank = {key: i for i, key in enumerate(order)}
            if self.row_count > 1:
                self.sort("id", key=lambda cell: rank.get(cell.plain, len(rank)))
            if keep is not None and keep in self._shown:
                self.move_cursor(row=self.get_row_index(keep), scroll=False)

    def select(self, service_id: str) -> bool:
        if service_id not in self._shown:
            return False
        self.move_cursor(row=self.get_row_index(service_id))
        return True
