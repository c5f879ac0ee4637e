"""The main screen: header, live service grid, filter, plan pane and the running-jobs strip."""

from __future__ import annotations

import logging
from functools import partial

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.worker import Worker
from textual.widgets import Footer, Input, Static

from unidesk_tui import plan_cache
from unidesk_tui.documents import JobRecord, PlanDocument, PlanItem
from unidesk_tui.messages import PlanRefreshed, RefreshFailed
from unidesk_tui.reconcile import run_plan
from unidesk_tui.screens.confirm_apply import ApplyRequest, ConfirmApplyScreen
from unidesk_tui.screens.service_detail import ServiceDetailScreen
from unidesk_tui.widgets.plan_pane import PROD_DISABLED_REASON, PlanPane, apply_blocker
from unidesk_tui.widgets.present import JOB_STATUS, age_text, job_started, row_state
from unidesk_tui.widgets.service_grid import SORTABLE, STATE_RANK, ServiceGrid, row_cells
from unidesk_tui.widgets.status_header import StatusHeader
from unidesk_tui.widgets.guard import guard_handlers, guarded

log = logging.getLogger(__name__)

ENVIRONMENTS: tuple[str | None, ...] = (None, "dev", "prod")
HEALTH_RANK = {"unhealthy": 0, "unknown": 1, "healthy": 2}


def env_key(environment: str | None) -> str:
    return environment or "file"


@guard_handlers
class MainScreen(Screen[None]):
    """Drives `run_plan` in a thread worker and keeps the grid in step, row by row."""

    BINDINGS = [
        Binding("r", "refresh", "Refresh"),
        Binding("space", "stage", "Stage"),
        Binding("a", "apply", "Apply"),
        Binding("f", "toggle_force", "Force"),
        Binding("d", "toggle_dry_run", "Dry-run"),
        Binding("x", "clear_staged", "Unstage all", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse", show=False),
        Binding("e", "next_environment", "Env"),
        Binding("1", "environment('file')", "file", show=False),
        Binding("2", "environment('dev')", "dev", show=False),
        Binding("3", "environment('prod')", "prod", show=False),
        Binding("l", "last_job_log", "Job log", show=False),
        Binding("J", "app.show_jobs", "Jobs"),
        Binding("escape", "escape", "Clear filter", show=False),
    ]

    #: The environment on screen: None for the local deploy.json, "dev" or "prod".
    environment: reactive[str | None] = reactive(None, init=False)
    #: The grid's filter text (case-insensitive substring of id, mode, target or state).
    filter_text: reactive[str] = reactive("", init=False)
    #: The column the grid is sorted by.
    sort_column: reactive[str] = reactive("id", init=False)
    #: Sort descending when True.
    sort_reverse: reactive[bool] = reactive(False, init=False)

    def __init__(self, environment: str | None = None) -> None:
        super().__init__()
        self.set_reactive(MainScreen.environment, environment)
        self.documents: dict[str, PlanDocument] = {}
        self.staged: dict[str, list[str]] = {}
        self._generation = 0
        self._refreshing: str | None = None  # env key of the refresh in flight
        self._pending_refresh = False
        self._grid_stale = False
        self._freshness: dict[str, tuple[float | None, float | None, bool]] = {}

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        yield ServiceGrid(id="grid")
        yield Input(placeholder="filter: service, mode, target or state — enter keeps it, esc clears", id="filter")
        yield PlanPane(id="plan")
        yield Static(id="jobs-strip")
        yield Footer()

    def on_mount(self) -> None:
        header = self.query_one(StatusHeader)
        header.workspace = self.app.workspace.root.name
        box = self.query_one("#filter", Input)
        box.display = False
        box.cursor_blink = not self.app.is_headless  # steady screenshots in tests
        self.query_one("#jobs-strip", Static).display = False
        self.watch(self.app, "jobs", self._jobs_changed, init=True)
        self._show_environment(initial=True)
        if self.app.refresh_interval > 0:
            self.set_interval(self.app.refresh_interval, self._interval_refresh, name="refresh")

    # -- data ----------------------------------------------------------------------------------

    @property
    def document(self) -> PlanDocument | None:
        return self.documents.get(env_key(self.environment))

    @property
    def staged_ids(self) -> list[str]:
        return self.staged.setdefault(env_key(self.environment), [])

    def item(self, service_id: str) -> PlanItem | None:
        doc = self.document
        return next((i for i in doc.services if i.id == service_id), None) if doc else None

    def last_job(self, service_id: str) -> JobRecord | None:
        env = env_key(self.environment)
        return next((j for j in self.app.jobs if j.environment == env and service_id in j.services), None)

    def _show_environment(self, initial: bool = False) -> None:
        """Paint what we have for the environment (the cache first), then refresh it."""
        self.query_one(StatusHeader).environment = self.environment
        key = env_key(self.environment)
        preloaded = self.app.preloaded.pop(key, None) if initial else None
        if preloaded is not None and key not in self.documents:
            # Read before the event loop started: paint it now, refresh once it is on screen.
            self.documents[key] = preloaded.document
            self._freshness[key] = (preloaded.refreshed_at, preloaded.duration_s, True)
            self._render_all()
            self.call_after_refresh(self.refresh_plan)
            return
        self._render_all()
        if key not in self.documents:
            self._load_cached(self.environment)
        self.refresh_plan()

    @work(thread=True, group="cache", exit_on_error=False)
    def _load_cached(self, environment: str | None) -> None:
        cached = plan_cache.load(self.app.workspace.state_dir, self.app.workspace.root, environment)
        if cached is not None:
            self.post_message(PlanRefreshed(environment, cached.document, cached.refreshed_at, cached.duration_s, stale=True, generation=-1))

    def refresh_plan(self) -> None:
        """Start a background check unless one is already running (then run one after it)."""
        if self._refreshing is not None:
            self._pending_refresh = True
            return
        self._generation += 1
        self._refreshing = env_key(self.environment)
        self.app.poll_jobs()  # a refresh shows jobs as current as the live state
        self.query_one(StatusHeader).refreshing = True
        self._check(self.environment, self._generation)

    def _interval_refresh(self) -> None:
        if self._refreshing is None:
            self.refresh_plan()

    @work(thread=True, group="refresh", exit_on_error=False)
    def _check(self, environment: str | None, generation: int) -> None:
        app = self.app
        started = app.clock()
        try:
            run = run_plan(app.workspace, "check", env=environment, read_live=None if environment else app.read_live)
        except Exception as exc:  # the core reports in-document; anything else is shown, not raised
            log.exception("check failed")
            self.post_message(RefreshFailed(environment, f"{type(exc).__name__}: {exc}", generation))
            return
        duration = app.clock() - started
        try:
            plan_cache.save(app.workspace.state_dir, app.workspace.root, environment, plan_cache.CachedPlan(run.document, started, duration))
        except OSError as exc:
            log.warning("cannot write the plan cache: %s", exc)
        self.post_message(PlanRefreshed(environment, run.document, started, duration, generation=generation))

    @on(PlanRefreshed)
    def _on_refreshed(self, message: PlanRefreshed) -> None:
        key = env_key(message.environment)
        if message.stale and key in self.documents:
            return  # a real result arrived before the cache was read
        if not message.stale:
            self._refresh_done()
        self.documents[key] = message.document
        self._freshness[key] = (message.refreshed_at, message.duration_s, message.stale)
        if key != env_key(self.environment):
            return
        self._render_all()

    @on(RefreshFailed)
    def _on_refresh_failed(self, message: RefreshFailed) -> None:
        self._refresh_done()
        self.app.notify(message.error, title="Refresh failed", severity="error", timeout=8)

    def _refresh_done(self) -> None:
        self._refreshing = None
        self.query_one(StatusHeader).refreshing = False
        if self._pending_refresh:
            self._pending_refresh = False
            self.refresh_plan()

    @guarded
    def _jobs_changed(self, _jobs: list[JobRecord]) -> None:
        self._render_grid()
        self._render_jobs_strip()

    # -- rendering -----------------------------------------------------------------------------

    def _render_all(self) -> None:
        if self.is_mounted and not self._visible_now():
            self._grid_stale = True  # hidden under a full screen: catch up when it resumes
            return
        key = env_key(self.environment)
        header = self.query_one(StatusHeader)
        header.document = self.documents.get(key)
        header.refreshed_at, header.duration_s, header.stale = self._freshness.get(key, (None, None, False))
        self._render_grid()
        self._render_plan()

    def _visible(self, doc: PlanDocument) -> list[PlanItem]:
        env_mode = self.environment is not None
        needle = self.filter_text.strip().lower()
        items = list(doc.services)
        if needle:
            items = [i for i in items if needle in " ".join((i.id, i.mode or "", i.target or "", row_state(i, env_mode))).lower()]
        return sorted(items, key=self._sort_key, reverse=self.sort_reverse)

    def _sort_key(self, item: PlanItem):
        column = self.sort_column
        if column == "state":
            return (STATE_RANK.get(row_state(item, self.environment is not None), 99), item.id)
        if column == "health":
            return (HEALTH_RANK.get(item.live.health if item.live else "unknown", 1), item.id)
        if column == "job":
            job = self.last_job(item.id)
            started = job_started(job) if job else None
            return (-(started or 0), item.id)
        return (getattr(item, column) or "", item.id)

    def _visible_now(self) -> bool:
        """On top, or under a dialog (a full screen such as a job log hides the grid)."""
        try:
            top = self.app.screen
        except Exception:
            return False
        return top is self or (isinstance(top, ModalScreen) and self in self.app.screen_stack)

    def on_screen_resume(self) -> None:
        if self._grid_stale:
            self._render_all()

    def _render_grid(self) -> None:
        if self.is_mounted and not self._visible_now():
            self._grid_stale = True  # hidden under another screen: catch up when it resumes
            return
        self._grid_stale = False
        grid = self.query_one(ServiceGrid)
        doc = self.document
        if doc is None:
            grid.sync({}, [])
            return
        env_mode = self.environment is not None
        now = self.app.clock()
        staged = set(self.staged_ids)
        items = self._visible(doc)
        rows = {}
        for item in items:
            job = self.last_job(item.id)
            signature = (item, env_mode, item.id in staged, job.id if job else None, job.status if job else None, age_text(job_started(job), now) if job else None)
            rows[item.id] = (signature, partial(row_cells, item, env_mode=env_mode, staged=item.id in staged, last_job=job, now=now))
        grid.sync(rows, [i.id for i in items])
        grid.border_subtitle = f"{len(items)}/{len(doc.services)} services · sort {self.sort_column}{' ↓' if self.sort_reverse else ''}" + (f" · filter “{self.filter_text}”" if self.filter_text else "")

    def _render_plan(self) -> None:
        pane = self.query_one(PlanPane)
        doc = self.document
        items = [i for sid in self.staged_ids if (i := self.item(sid)) is not None]
        pane.environment = self.environment
        enabled = {i.id for i in doc.services if i.applyEnabled} if doc and self.environment else None
        if enabled != pane.enabled:
            pane.enabled = enabled
        if items != pane.items:  # a layout pass only when the staged list really changed
            pane.items = items

    def _render_jobs_strip(self) -> None:
        strip = self.query_one("#jobs-strip", Static)
        active = [j for j in self.app.jobs if j.status in ("queued", "running")]
        strip.display = bool(active)
        if not active:
            return
        out = Text()
        for job in active[:3]:
            symbol, style = JOB_STATUS[job.status]
            done = sum(1 for s in job.steps if s.status in ("succeeded", "skipped"))
            current = next((s for s in job.steps if s.status == "running"), None)
            out.append(f" {symbol} job {job.id} {job.status}", style=style)
            out.append(f" · {job.environment} · {', '.join(job.services)} · step {done}/{len(job.steps)}")
            if current:
                out.append(f" {current.service} · {current.name}", style="bold")
            out.append("   (J jobs, l log)\n", style="dim")
        out.rstrip()
        strip.update(out)

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        self.app.report_worker(event)

    # -- watchers ------------------------------------------------------------------------------

    def watch_environment(self, _old: str | None, _new: str | None) -> None:
        self._show_environment()

    def watch_filter_text(self) -> None:
        self._render_grid()

    def watch_sort_column(self) -> None:
        self._render_grid()

    def watch_sort_reverse(self) -> None:
        self._render_grid()

    # -- actions -------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        if self._refreshing is not None:
            self.app.notify("a refresh is already running; another follows it", timeout=2)
        self.refresh_plan()

    def action_environment(self, name: str) -> None:
        self.environment = None if name == "file" else name

    def action_next_environment(self) -> None:
        i = ENVIRONMENTS.index(self.environment)
        self.environment = ENVIRONMENTS[(i + 1) % len(ENVIRONMENTS)]

    def action_stage(self) -> None:
        sid = self.query_one(ServiceGrid).selected_id
        if sid is None:
            return
        staged = self.staged_ids
        if sid in staged:
            staged.remove(sid)
        else:
            staged.append(sid)
        self._render_all()

    def unstage(self, environment: str | None, services: list[str]) -> None:
        """A job took these services: they leave the plan pane."""
        staged = self.staged.setdefault(env_key(environment), [])
        staged[:] = [s for s in staged if s not in services]
        self._render_all()

    def action_clear_staged(self) -> None:
        self.staged_ids.clear()
        self._render_all()

    def action_toggle_force(self) -> None:
        pane = self.query_one(PlanPane)
        pane.force = not pane.force

    def action_toggle_dry_run(self) -> None:
        pane = self.query_one(PlanPane)
        pane.dry_run = not pane.dry_run

    def action_sort(self) -> None:
        i = SORTABLE.index(self.sort_column) if self.sort_column in SORTABLE else -1
        self.sort_column = SORTABLE[(i + 1) % len(SORTABLE)]
        self.app.notify(f"sorted by {self.sort_column}", timeout=1.5)

    def action_reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse

    @on(ServiceGrid.HeaderSelected)
    def _header_clicked(self, event: ServiceGrid.HeaderSelected) -> None:
        column = event.column_key
        if column in SORTABLE:
            if column == self.sort_column:
                self.sort_reverse = not self.sort_reverse
            else:
                self.sort_column = column

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        box.display = bool(event.value)
        self.query_one(ServiceGrid).focus()

    def action_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.display or self.filter_text:
            box.value = ""
            box.display = False
            self.filter_text = ""
            self.query_one(ServiceGrid).focus()

    @on(ServiceGrid.RowSelected)
    def _row_selected(self, event: ServiceGrid.RowSelected) -> None:
        item = self.item(event.row_key)
        if item is not None:
            self.app.push_screen(ServiceDetailScreen(item, self.environment is not None, self.last_job(item.id)))

    def action_last_job_log(self) -> None:
        sid = self.query_one(ServiceGrid).selected_id
        job = self.last_job(sid) if sid else None
        if job is None:
            self.app.notify(f"no job for {sid} in {env_key(self.environment)} yet", timeout=3)
            return
        self.app.open_job(job.id)

    def action_apply(self) -> None:
        doc = self.document
        env = self.environment
        if env == "prod":
            self.app.notify(PROD_DISABLED_REASON, title="Apply disabled in prod", severity="error", timeout=8)
            return
        if doc is None:
            self.app.notify("no plan yet: wait for the refresh", severity="warning")
            return
        items = [i for sid in self.staged_ids if (i := self.item(sid)) is not None]
        pane = self.query_one(PlanPane)
        blocker = apply_blocker(env, items, pane.enabled)
        if blocker:
            self.app.notify(blocker, title="Apply refused", severity="error", timeout=8)
            return
        request = ApplyRequest(env, doc, tuple(items), force=pane.force, dry_run=pane.dry_run)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.start_apply(request)
            else:
                self.app.notify("apply cancelled; nothing changed", timeout=3)

        self.app.push_screen(ConfirmApplyScreen(request), confirmed)

    def select_service(self, service_id: str) -> None:
        if not self.query_one(ServiceGrid).select(service_id):
            self.filter_text = ""
            self.query_one("#filter", Input).value = ""
            self.call_after_refresh(self.query_one(ServiceGrid).select, service_id)
        self.query_one(ServiceGrid).focus()
