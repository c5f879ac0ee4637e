"""The live service grid: one row per service, keyed by service id, updated row by row.

A line-API widget rather than a DataTable: DataTable re-renders every visible cell through Rich
after any single `update_cell`, which costs ~100 ms per refresh at 200 rows on a small machine.
Here each row is rendered once into a cached Strip and re-rendered only when its own cells
change; rows are never cleared, so the cursor, the scroll position and the staging survive
every refresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from unidesk_tui.documents import JobRecord, PlanItem
from unidesk_tui.widgets.present import (
    CHANGED_STYLE,
    HEALTH,
    PLAIN,
    STATE_ORDER,
    STATES,
    Palette,
    label,
    last_job_parts,
    row_state,
    short,
)

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
# Columns dropped first when the terminal is narrow: id, state, desired and running stay.
DROP_ORDER: tuple[str, ...] = ("mode", "job", "target", "health")
STATE_RANK = {name: i for i, name in enumerate(STATE_ORDER)}
PAD = 2  # spaces after each column


WAITING = " ⟳"  # appended to the state of a row whose target has not answered this refresh yet


# A cell is (text, style): a Text is only made for the rows on screen (a 1,000-row first paint
# would otherwise build 9,000 of them).
Cell = tuple[str, str]


def row_cells(
    item: PlanItem, *, env_mode: bool, staged: bool, last_job: JobRecord | None, now: float, palette: Palette = PLAIN
) -> dict[str, Cell]:
    """The cells of one service's row."""
    state = row_state(item, env_mode)
    live = item.live
    running = live.commit if live else None
    if live is None or state in ("missing", "unreachable", "runtime-unreachable"):
        # Not read; or an answer on the health path comes from something else (another environment's pod).
        health: Cell = ("—", "dim")
    else:
        health = label(HEALTH, live.health, palette=palette)
    return {
        "mark": ("●", palette.style("bold $accent")) if staged else (" ", ""),
        "id": (item.id, "bold"),
        "mode": (item.mode or "—", ""),
        "target": (item.target or "—", ""),
        "desired": (short(item.commit or item.requestedCommit), ""),
        "running": (
            short(running),
            palette.style(CHANGED_STYLE) if running is not None and running != item.commit else "",
        ),
        "state": label(STATES, state, palette=palette),
        "health": health,
        "job": last_job_parts(last_job, now, palette),
    }


class ServiceGrid(ScrollView, can_focus=True):
    """Rows keyed by service id; `sync` is the only way rows change."""

    COMPONENT_CLASSES = {"grid--header", "grid--cursor"}
    DEFAULT_CSS = """
    ServiceGrid {
        background: $surface;
        color: $foreground;
        & > .grid--header { background: $panel; color: $foreground; text-style: bold; }
        & > .grid--cursor { background: $block-cursor-blurred-background; color: $block-cursor-blurred-foreground; }
        &:focus > .grid--cursor {
            background: $block-cursor-background; color: $block-cursor-foreground; text-style: bold;
        }
    }
    """
    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("home,g", "first", "Top", show=False),
        Binding("end,G", "last", "Bottom", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("enter", "select", "Detail", show=False),
    ]

    #: Index of the highlighted row.
    cursor_row: reactive[int] = reactive(0, init=False)

    @dataclass
    class RowSelected(Message):
        """Enter (or a double click) on a row."""

        grid: ServiceGrid
        row_key: str

    @dataclass
    class HeaderSelected(Message):
        """A click on a column header."""

        grid: ServiceGrid
        column_key: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._cells: dict[str, dict[str, Cell]] = {}
        self._signatures: dict[str, object] = {}
        self._widths: dict[str, int] = {key: Text(label).cell_len + 2 for key, label in COLUMNS}  # + a sort arrow
        self._strips: dict[tuple[str, bool], Strip] = {}
        self._header: Strip | None = None
        self._shown: tuple[str, ...] = tuple(key for key, _ in COLUMNS)
        self.sort_key: tuple[str, bool] = ("id", False)  # (column, reverse): the header shows an arrow
        self.empty_text: str = ""  # shown when there are no rows (e.g. the filter matches nothing)
        self.waiting: set[str] = set()  # rows marked ⟳ (kept out of the cells: marking all is cheap)

    # -- queries -------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def row_keys(self) -> list[str]:
        return list(self._order)

    @property
    def selected_id(self) -> str | None:
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    def get_cell(self, row_key: str, column_key: str) -> Text:
        return Text(*self._cells[row_key][column_key])

    # -- updates -------------------------------------------------------------------------------

    def sync(self, rows: Mapping[str, tuple[object, Callable[[], dict[str, Cell]]]], order: Iterable[str]) -> None:
        """Show exactly `rows` in `order`. Each row is (signature, make_cells); cells are only
        rebuilt, and the row only re-rendered, when its signature changed."""
        keep = self.selected_id
        order = [k for k in order if k in rows]
        for gone in [k for k in self._cells if k not in rows]:
            del self._cells[gone]
            self._signatures.pop(gone, None)
            self._forget(gone)
        widths_changed = False
        for key in order:
            signature, make_cells = rows[key]
            if key in self._cells and self._signatures.get(key) == signature:
                continue
            self._signatures[key] = signature
            cells = make_cells()
            self._cells[key] = cells
            self._forget(key)
            for column, (text, _style) in cells.items():
                width = cell_len(text) + (len(WAITING) if column == "state" else 0)
                if width > self._widths[column]:  # widen only: no jitter, no re-measuring
                    self._widths[column] = width
                    widths_changed = True
        if widths_changed:
            self._fit()
        self._order = order
        self._index = {k: i for i, k in enumerate(order)}
        self.virtual_size = Size(self._line_width(), len(order) + 1)
        if keep is not None and keep in self._index:
            self.set_reactive(ServiceGrid.cursor_row, self._index[keep])
        elif order:
            self.set_reactive(ServiceGrid.cursor_row, min(self.cursor_row, len(order) - 1))
        self.refresh()

    def _line_width(self) -> int:
        return sum(self._widths[k] + PAD for k in self._shown)

    def _fit(self) -> None:
        """Choose the columns that fit the width, dropping the least needed first."""
        width = self.scrollable_content_region.width or self.size.width
        shown = [key for key, _ in COLUMNS]
        for key in DROP_ORDER:
            if width <= 0 or sum(self._widths[k] + PAD for k in shown) <= width:
                break
            shown.remove(key)
        self._shown = tuple(shown)
        self._strips.clear()
        self._header = None
        self.virtual_size = Size(self._line_width(), len(self._order) + 1)

    def on_resize(self) -> None:
        self._fit()

    def set_waiting(self, keys: set[str]) -> None:
        """Mark exactly these rows as waiting for their target (only changed rows re-render)."""
        if keys == self.waiting:
            return
        for key in keys ^ self.waiting:
            self._forget(key)
        self.waiting = set(keys)
        self.refresh()

    def set_sort(self, column: str, reverse: bool) -> None:
        if (column, reverse) != self.sort_key:
            self.sort_key = (column, reverse)
            self._header = None
            self.refresh()

    def _forget(self, key: str) -> None:
        self._strips.pop((key, True), None)
        self._strips.pop((key, False), None)

    def select(self, service_id: str) -> bool:
        if service_id not in self._index:
            return False
        self.cursor_row = self._index[service_id]
        return True

    # -- cursor --------------------------------------------------------------------------------

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._order) - 1)) if self._order else 0

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()

    def _scroll_to_cursor(self) -> None:
        body = max(1, self.scrollable_content_region.height - 1)  # minus the header line
        top = int(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + body:
            self.scroll_to(y=self.cursor_row - body + 1, animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self.cursor_row -= 1

    def action_cursor_down(self) -> None:
        self.cursor_row += 1

    def action_first(self) -> None:
        self.cursor_row = 0

    def action_last(self) -> None:
        self.cursor_row = len(self._order) - 1

    def action_page_up(self) -> None:
        self.cursor_row -= max(1, self.scrollable_content_region.height - 2)

    def action_page_down(self) -> None:
        self.cursor_row += max(1, self.scrollable_content_region.height - 2)

    def action_select(self) -> None:
        if self.selected_id is not None:
            self.post_message(self.RowSelected(self, self.selected_id))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)  # inside the border: row 0 is the header
        if offset is None:
            return
        if offset.y == 0:
            x = offset.x + int(self.scroll_x)
            for key in self._shown:
                x -= self._widths[key] + PAD
                if x < 0:
                    self.post_message(self.HeaderSelected(self, key))
                    break
            return
        row = int(self.scroll_y) + offset.y - 1
        if 0 <= row < len(self._order):
            self.cursor_row = row
            if event.chain >= 2:
                self.action_select()

    # -- rendering -----------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()
        self._header = None

    def _line(self, texts: dict[str, Cell], style: Style, waiting: bool = False, cursor: bool = False) -> Strip:
        segments: list[Segment] = []
        console = self.app.console
        for key in self._shown:
            # The cell's style as a span: `Text.render` drops a Text's own base style, which left
            # every cell in the row's colour (the state colours never reached the terminal).
            text, cell_style = texts[key]
            cell = Text(text)
            if cell_style:
                cell.stylize(cell_style)
            if waiting and key == "state":
                cell.append(WAITING, style="dim")
            cell.truncate(self._widths[key], overflow="ellipsis", pad=True)
            cell.append(" " * PAD)
            segments.extend(cell.render(console, end=""))
        # The cursor row's colours win over the cells'; elsewhere the cells' colours win over the row's.
        if cursor:
            return Strip(Segment.apply_style(segments, post_style=style)).simplify()
        return Strip(Segment.apply_style(segments, style)).simplify()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            if self._header is None:
                column, reverse = self.sort_key
                labels = {
                    key: (title + ((" ↓" if reverse else " ↑") if key == column else ""), "") for key, title in COLUMNS
                }
                self._header = self._line(labels, base + self.get_component_rich_style("grid--header"))
            return self._header.crop_extend(
                scroll_x, scroll_x + width, base + self.get_component_rich_style("grid--header")
            )
        row = scroll_y + y - 1
        if row >= len(self._order):
            if row == 0 and self.empty_text:
                return Strip(Text(f" {self.empty_text}", style="italic").render(self.app.console, end="")).crop_extend(
                    0, width, base
                )
            return Strip.blank(width, base)
        key = self._order[row]
        cursor = row == self.cursor_row
        strip = self._strips.get((key, cursor))
        if strip is None:
            style = base + self.get_component_rich_style("grid--cursor") if cursor else base
            cells = self._cells[key]
            strip = self._line(cells, style, key in self.waiting, cursor)
            self._strips[(key, cursor)] = strip
        fill = base + self.get_component_rich_style("grid--cursor") if cursor else base
        return strip.crop_extend(scroll_x, scroll_x + width, fill)
