"""The main screen: header, live service grid, filter, plan pane and the running-jobs strip."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from functools import partial

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Static
from textual.worker import Worker

from unidesk_tui import plan_cache
from unidesk_tui.catalog import Catalog
from unidesk_tui.documents import JobRecord, PlanDocument, PlanItem
from unidesk_tui.messages import PlanRefreshed, RefreshFailed, TargetAnswered, TargetsPending
from unidesk_tui.model import DesiredService, Environment, LiveReader, LiveState, Observation, State
from unidesk_tui.plan import decide
from unidesk_tui.planning import run_plan
from unidesk_tui.screens.confirm_apply import ApplyRequest, ConfirmApplyScreen
from unidesk_tui.screens.service_detail import ServiceDetailScreen, detail_text, job_summary
from unidesk_tui.screens.typed_app import console_app
from unidesk_tui.widgets.daemon import in_daemon_thread
from unidesk_tui.widgets.guard import guard_handlers, guarded
from unidesk_tui.widgets.plan_pane import PROD_DISABLED_REASON, PlanPane, apply_blocker
from unidesk_tui.widgets.present import JOB_STATUS, Palette, age_text, job_when, row_state, summary_text
from unidesk_tui.widgets.service_grid import SORTABLE, STATE_RANK, ServiceGrid, row_cells
from unidesk_tui.widgets.status_header import StatusHeader

log = logging.getLogger(__name__)

HEALTH_RANK = {"unhealthy": 0, "unknown": 1, "healthy": 2}
SIDE_PANE_MIN_WIDTH = 160  # from here on the selected service's detail (or the running job) shows beside the grid
# What "stage all drifted" takes: services whose runtime does not prove the desired commit.
STAGE_ALL_STATES = ("drift", "missing", "degraded", "provenance-mismatch", "planned")


@guard_handlers
class MainScreen(Screen[None]):
    """Drives `run_plan` in a thread worker and keeps the grid in step, row by row."""

    BINDINGS = [
        Binding("space", "stage", "Stage"),
        Binding("a", "apply", "Apply"),
        Binding("d,equals_sign", "diff", "Diff", key_display="d"),
        Binding("J", "app.show_jobs", "Jobs"),
        Binding("slash", "filter", "Filter"),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("plus", "stage_drifted", "Stage all drifted", show=False),
        Binding("x", "clear_staged", "Unstage all (u undoes)", show=False),
        Binding("u", "undo_clear", "Undo unstage all", show=False),
        Binding("s", "sort", "Sort by next column", show=False),
        Binding("S", "reverse_sort", "Reverse the sort", show=False),
        Binding("e", "next_environment", "Next environment", show=False),
        Binding("1", "environment('file')", "Local deploy.json", show=False),
        Binding("2", "environment('dev')", "dev environment", show=False),
        Binding("3", "environment('prod')", "prod environment (read-only)", show=False),
        Binding("l", "last_job_log", "Log of the service's last job", show=False),
        Binding("c", "cancel_job", "Cancel the service's running job", show=False),
        Binding("y", "yank", "Copy the desired SHA (OSC 52)", show=False),
        Binding("escape", "escape", "Clear the filter", show=False),
        Binding("q", "app.quit_console", "Quit"),
    ]

    #: The environment on screen: file (the local deploy.json), dev or prod.
    environment: reactive[Environment] = reactive(Environment.FILE, init=False)
    #: The grid's filter text (case-insensitive substring of id, mode, target or state).
    filter_text: reactive[str] = reactive("", init=False)
    #: The column the grid is sorted by.
    sort_column: reactive[str] = reactive("id", init=False)
    #: Sort descending when True.
    sort_reverse: reactive[bool] = reactive(False, init=False)

    def __init__(self, environment: Environment = Environment.FILE) -> None:
        super().__init__()
        self.set_reactive(MainScreen.environment, environment)
        self.documents: dict[Environment, PlanDocument] = {}
        self.staged: dict[Environment, list[str]] = {}
        self._generation = 0
        self._refreshing: Environment | None = None  # the environment of the refresh in flight
        self._pending_refresh = False
        self._grid_stale = False
        self._freshness: dict[str, tuple[float | None, float | None, bool]] = {}
        self._waiting: set[str] = set()  # targets of the refresh in flight that have not answered
        self._cleared: tuple[Environment, list[str]] | None = None  # what `x` unstaged, for `u`

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        with Horizontal(id="main-body"):
            yield ServiceGrid(id="grid")
            yield Static(id="side")
        yield Input(placeholder="filter: service, mode, target or state — enter keeps it, esc clears", id="filter")
        yield PlanPane(id="plan")
        yield Static(id="jobs-strip")
        yield Footer()

    def on_mount(self) -> None:
        header = self.query_one(StatusHeader)
        root = console_app(self).workspace.root
        header.workspace = f"{root.parent.name}/{root.name}" if root.parent.name else root.name
        box = self.query_one("#filter", Input)
        box.display = False
        box.cursor_blink = not self.app.is_headless  # steady screenshots in tests
        self.query_one("#jobs-strip", Static).display = False
        self.query_one("#side", Static).display = False
        self.watch(self.app, "jobs", self._jobs_changed, init=True)
        self.watch(self.query_one(ServiceGrid), "cursor_row", self._render_side, init=False)
        self._show_environment(initial=True)
        if console_app(self).refresh_interval > 0:
            self.set_interval(console_app(self).refresh_interval, self._interval_refresh, name="refresh")
        self.set_interval(1.0, self._tick, name="tick")  # ages ("26s ago") and elapsed times move

    def on_resize(self) -> None:
        self.query_one(Footer).compact = self.size.width < 110  # the keys fit in 80 columns
        side = self.query_one("#side", Static)
        wide = self.size.width >= SIDE_PANE_MIN_WIDTH
        if side.display != wide:
            side.display = wide
            self._render_side()

    def _tick(self) -> None:
        if self._visible_now():
            self._render_grid()
            self._render_jobs_strip()
            self._render_side()

    @property
    def palette(self) -> Palette:
        return Palette.of(self.app)

    # -- data ----------------------------------------------------------------------------------

    @property
    def document(self) -> PlanDocument | None:
        return self.documents.get(self.environment)

    @property
    def staged_ids(self) -> list[str]:
        return self.staged.setdefault(self.environment, [])

    def item(self, service_id: str) -> PlanItem | None:
        doc = self.document
        return next((i for i in doc.services if i.id == service_id), None) if doc else None

    def last_job(self, service_id: str) -> JobRecord | None:
        env = self.environment
        return next((j for j in console_app(self).jobs if j.environment == env and service_id in j.services), None)

    def _show_environment(self, initial: bool = False) -> None:
        """Paint what we have for the environment (the cache first), then refresh it."""
        self.query_one(StatusHeader).environment = self.environment
        key = self.environment
        preloaded = console_app(self).preloaded.pop(key, None) if initial else None
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
    def _load_cached(self, environment: Environment) -> None:
        cached = plan_cache.load(console_app(self).workspace.state_dir, console_app(self).workspace.root, environment)
        if cached is not None:
            self.post_message(
                PlanRefreshed(
                    environment, cached.document, cached.refreshed_at, cached.duration_s, stale=True, generation=-1
                )
            )

    def refresh_plan(self) -> None:
        """Start a background check unless one is already running (then run one after it)."""
        if self._refreshing is not None:
            self._pending_refresh = True
            return
        self._generation += 1
        self._refreshing = self.environment
        console_app(self).poll_jobs()  # a refresh shows jobs as current as the live state
        self.query_one(StatusHeader).refreshing = True
        self._check(self.environment, self._generation)

    def _interval_refresh(self) -> None:
        if self._refreshing is None:
            self.refresh_plan()

    @work(group="refresh", exit_on_error=False)
    async def _check(self, environment: Environment, generation: int) -> None:
        app = console_app(self)
        # environment views read the environment's runtime too (`--env X --live`): running commits, not only the plan
        reader = app.read_live
        if reader is not None:
            reader = self._streaming(reader, environment, generation)

        def check() -> tuple[PlanDocument, float, float]:
            started = app.clock()
            run = run_plan(app.workspace, "check", env=environment.key, read_live=reader)
            duration = app.clock() - started
            try:
                plan_cache.save(
                    app.workspace.state_dir,
                    app.workspace.root,
                    environment,
                    plan_cache.CachedPlan(run.document, started, duration),
                )
            except OSError as exc:
                log.warning("cannot write the plan cache: %s", exc)
            return run.document, started, duration

        try:
            # A daemon thread: quitting never waits on a silent host.
            document, started, duration = await in_daemon_thread(check)
        except Exception as exc:  # the core reports in-document; anything else is shown, not raised
            log.exception("check failed")
            self.post_message(RefreshFailed(environment, f"{type(exc).__name__}: {exc}", generation))
            return
        self.post_message(PlanRefreshed(environment, document, started, duration, generation=generation))

    def _streaming(self, reader: LiveReader, environment: Environment, generation: int) -> LiveReader:
        """A live reader that reads each target in its own thread and posts each target's rows
        as soon as that target answers; the check's document still arrives when all are done."""

        def read(catalog: Catalog, desired: list[DesiredService]) -> dict[str, Observation]:
            by_target: dict[str, list[DesiredService]] = defaultdict(list)
            for service in desired:
                by_target[service.target or "?"].append(service)
            self.post_message(
                TargetsPending(environment, set(by_target), [decide(s, live=None) for s in desired], generation)
            )
            merged: dict[str, Observation] = {}
            lock = threading.Lock()

            def one(target: str, services: list[DesiredService]) -> None:
                try:
                    observed = reader(catalog, services)
                except Exception as exc:  # shown on this target's rows; the others go on
                    log.warning("live read of %s failed: %s", target, exc)
                    observed = {
                        s.id: Observation(LiveState(state=State.ERROR, message=f"live read failed: {exc}"))
                        for s in services
                    }
                items = [
                    decide(s, live=observed[s.id].live, image_present=observed[s.id].imagePresent)
                    for s in services
                    if s.id in observed
                ]
                self.post_message(TargetAnswered(environment, target, items, generation))
                with lock:
                    merged.update(observed)

            threads = [
                threading.Thread(target=one, args=pair, name=f"unidesk-live-{pair[0]}", daemon=True)
                for pair in by_target.items()
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return merged

        return read

    @on(TargetsPending)
    def _on_targets_pending(self, message: TargetsPending) -> None:
        if message.generation != self._generation:
            return
        key = message.environment
        if key not in self.documents:  # first run, no cache: the rows show now, waiting for their hosts
            self.documents[key] = PlanDocument(ok=False, command="check", services=message.items)
        if key == self.environment:
            self._waiting = set(message.targets)
            self._render_all()

    @on(TargetAnswered)
    def _on_target_answered(self, message: TargetAnswered) -> None:
        if message.generation != self._generation:
            return
        key = message.environment
        self._waiting.discard(message.target)
        doc = self.documents.get(key)
        if doc is not None:
            fresh = {i.id: i for i in message.items}
            known = {i.id for i in doc.services}
            services = [fresh.get(i.id, i) for i in doc.services] + [i for i in message.items if i.id not in known]
            self.documents[key] = doc.model_copy(update={"services": services})
        if key == self.environment:
            self._render_all()

    @on(PlanRefreshed)
    def _on_refreshed(self, message: PlanRefreshed) -> None:
        key = message.environment
        if message.stale and key in self.documents:
            return  # a real result arrived before the cache was read
        if not message.stale:
            self._refresh_done()
        self.documents[key] = message.document
        self._freshness[key] = (message.refreshed_at, message.duration_s, message.stale)
        if key != self.environment:
            return
        self._render_all()

    @on(RefreshFailed)
    def _on_refresh_failed(self, message: RefreshFailed) -> None:
        self._refresh_done()
        self.app.notify(message.error, title="Refresh failed", severity="error", timeout=8)

    def _refresh_done(self) -> None:
        self._refreshing = None
        self._waiting = set()
        self.query_one(StatusHeader).waiting = ()
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
        key = self.environment
        header = self.query_one(StatusHeader)
        header.document = self.documents.get(key)
        header.refreshed_at, header.duration_s, header.stale = self._freshness.get(key, (None, None, False))
        header.waiting = tuple(sorted(self._waiting))
        self._render_grid()
        self._render_plan()
        self._render_side()

    def _visible(self, doc: PlanDocument) -> list[PlanItem]:
        env_mode = self.environment.named
        needle = self.filter_text.strip().lower()
        items = list(doc.services)
        if needle:
            items = [
                i
                for i in items
                if needle in " ".join((i.id, i.mode or "", i.target or "", row_state(i, env_mode))).lower()
            ]
        return sorted(items, key=self._sort_key, reverse=self.sort_reverse)

    def _sort_key(self, item: PlanItem):
        column = self.sort_column
        if column == "state":
            return (STATE_RANK.get(row_state(item, self.environment.named), 99), item.id)
        if column == "health":
            return (HEALTH_RANK.get(item.live.health if item.live else "unknown", 1), item.id)
        if column == "job":
            job = self.last_job(item.id)
            when = job_when(job) if job else None
            return (-(when or 0), item.id)
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
        grid.set_sort(self.sort_column, self.sort_reverse)
        self.set_class(self.environment == Environment.PROD, "-prod")
        doc = self.document
        if doc is None:
            grid.empty_text = "no plan yet: reading the manifest…"
            grid.sync({}, [])
            return
        env_mode = self.environment.named
        now = console_app(self).clock()
        staged = set(self.staged_ids)
        palette = self.palette
        items = self._visible(doc)
        rows = {}
        last = self._last_jobs()
        for item in items:
            job = last.get(item.id)
            signature = (
                item,
                env_mode,
                item.id in staged,
                job,
                age_text(job_when(job), now) if job else None,
                id(palette),
            )
            rows[item.id] = (
                signature,
                partial(
                    row_cells, item, env_mode=env_mode, staged=item.id in staged, last_job=job, now=now, palette=palette
                ),
            )
        if self.filter_text and not items:
            grid.empty_text = f"no service matches “{self.filter_text}” (esc clears the filter)"
        else:
            grid.empty_text = "the manifest names no service" if not doc.services else ""
        grid.sync(rows, [i.id for i in items])
        grid.set_waiting({i.id for i in items if (i.target or "?") in self._waiting} if self._waiting else set())
        grid.border_title = summary_text([row_state(i, env_mode) for i in doc.services], palette)
        if self.environment == Environment.PROD:
            grid.border_title = Text.assemble(
                (" PROD · read-only ", palette.style("bold reverse $error")), " ", grid.border_title or ""
            )
        grid.border_subtitle = (
            f"{len(items)}/{len(doc.services)} services · sort {self.sort_column} {'↓' if self.sort_reverse else '↑'}"
            + (f" · filter “{self.filter_text}”" if self.filter_text else "")
        )

    def _render_side(self, *_args: object) -> None:
        side = self.query_one("#side", Static)
        if not side.display:
            return
        active = console_app(self).active_jobs()
        if active:
            side.update(job_summary(active[0], console_app(self).clock(), self.palette))
            return
        sid = self.query_one(ServiceGrid).selected_id
        item = self.item(sid) if sid else None
        if item is None:
            side.update(Text("select a service to see its detail", style="dim"))
            return
        side.update(
            detail_text(
                item,
                self.environment.named,
                self.service_jobs(item.id),
                self.palette,
                now=console_app(self).clock(),
            )
        )

    def _last_jobs(self) -> dict[str, JobRecord]:
        """Each service's newest job in this environment (one pass over the jobs, not one per row)."""
        env = self.environment
        out: dict[str, JobRecord] = {}
        for job in console_app(self).jobs:  # newest first
            if job.environment == env:
                for sid in job.services:
                    out.setdefault(sid, job)
        return out

    def service_jobs(self, service_id: str) -> list[JobRecord]:
        """This environment's jobs that touched the service, newest first."""
        env = self.environment
        return [j for j in console_app(self).jobs if j.environment == env and service_id in j.services]

    def _render_plan(self) -> None:
        pane = self.query_one(PlanPane)
        doc = self.document
        items = [i for sid in self.staged_ids if (i := self.item(sid)) is not None]
        pane.environment = self.environment
        enabled = {i.id for i in doc.services if i.applyEnabled} if doc and self.environment.named else None
        if enabled != pane.enabled:
            pane.enabled = enabled
        if items != pane.items:  # a layout pass only when the staged list really changed
            pane.items = items

    def _render_jobs_strip(self) -> None:
        strip = self.query_one("#jobs-strip", Static)
        active = [j for j in console_app(self).jobs if j.status in ("queued", "running")]
        strip.display = bool(active)
        if not active:
            return
        out = Text()
        palette = self.palette
        for job in active[:3]:
            symbol, style = JOB_STATUS[job.status]
            style = palette.style(style)
            done = sum(1 for s in job.steps if s.status in ("succeeded", "skipped"))
            current = next((s for s in job.steps if s.status == "running"), None)
            out.append(f" {symbol} job {job.id} {job.status}", style=style)
            out.append(f" · {job.environment} · {', '.join(job.services)} · step {done}/{len(job.steps)}")
            if current:
                out.append(f" {current.service} · {current.name}", style="bold")
            out.append("   (J jobs · l log · c cancel)\n", style="dim")
        out.rstrip()
        strip.update(out)

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        console_app(self).report_worker(event)

    # -- watchers ------------------------------------------------------------------------------

    def watch_environment(self, _old: Environment, _new: Environment) -> None:
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
        self.environment = Environment(name)

    def action_next_environment(self) -> None:
        order = list(Environment)
        self.environment = order[(order.index(self.environment) + 1) % len(order)]

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

    def unstage(self, environment: Environment, services: list[str]) -> None:
        """A job took these services: they leave the plan pane."""
        staged = self.staged.setdefault(environment, [])
        staged[:] = [s for s in staged if s not in services]
        self._render_all()

    def action_clear_staged(self) -> None:
        staged = self.staged_ids
        if not staged:
            return
        self._cleared = (self.environment, list(staged))
        self.app.notify(f"unstaged {len(staged)}: {', '.join(staged)} — u restores", timeout=6)
        staged.clear()
        self._render_all()

    def action_undo_clear(self) -> None:
        if self._cleared is None or self._cleared[0] != self.environment:
            self.app.notify("nothing to restore", timeout=2)
            return
        staged = self.staged_ids
        staged.extend(s for s in self._cleared[1] if s not in staged)
        self._cleared = None
        self._render_all()

    def action_stage_drifted(self) -> None:
        doc = self.document
        if doc is None:
            return
        env_mode = self.environment.named
        staged = self.staged_ids
        picked = [
            i.id
            for i in self._visible(doc)
            if i.action == "deploy"
            and row_state(i, env_mode) in STAGE_ALL_STATES
            and i.applyEnabled is not False
            and i.id not in staged
        ]
        staged.extend(picked)
        self.app.notify(
            f"staged {len(picked)}: {', '.join(picked)}" if picked else "nothing drifted to stage", timeout=3
        )
        self._render_all()

    def action_yank(self) -> None:
        item = self._selected_item()
        if item is not None and (item.commit or item.requestedCommit):
            console_app(self).yank(item.commit or item.requestedCommit or "")

    def _selected_item(self) -> PlanItem | None:
        sid = self.query_one(ServiceGrid).selected_id
        return self.item(sid) if sid else None

    def action_diff(self) -> None:
        from unidesk_tui.screens.diff import DiffScreen

        item = self._selected_item()
        if item is not None:
            self.app.push_screen(DiffScreen(item, self.environment))

    def action_cancel_job(self) -> None:
        sid = self.query_one(ServiceGrid).selected_id
        job = self.last_job(sid) if sid else None
        active = [j for j in console_app(self).active_jobs() if job is None or j.id == job.id] or console_app(
            self
        ).active_jobs()
        if not active:
            self.app.notify("no running job to cancel", timeout=3)
            return
        console_app(self).confirm_cancel(active[0].id)

    def action_sort(self) -> None:
        i = SORTABLE.index(self.sort_column) if self.sort_column in SORTABLE else -1
        self.sort_column = SORTABLE[(i + 1) % len(SORTABLE)]

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
            self.app.push_screen(ServiceDetailScreen(item, self.environment))

    def action_last_job_log(self) -> None:
        sid = self.query_one(ServiceGrid).selected_id
        job = self.last_job(sid) if sid else None
        if job is None:
            self.app.notify(f"no job for {sid} in {self.environment} yet", timeout=3)
            return
        console_app(self).open_job(job.id)

    def action_apply(self) -> None:
        doc = self.document
        env = self.environment
        if env == Environment.PROD:
            self.app.notify(PROD_DISABLED_REASON, title="Apply disabled in prod", severity="error", timeout=8)
            return
        if doc is None:
            self.app.notify("no plan yet: wait for the refresh", severity="warning")
            return
        items = [i for sid in self.staged_ids if (i := self.item(sid)) is not None]
        pane = self.query_one(PlanPane)
        blocker = apply_blocker(env, items, pane.enabled)
        if blocker:
            # The plan pane already shows the reason; the toast only says the key did nothing.
            self.app.notify("see the plan pane for why", title="Apply refused", severity="error", timeout=4)
            return
        self.confirm_apply(ApplyRequest(env, doc, tuple(items), force=False, dry_run=False))

    def confirm_apply(self, request: ApplyRequest) -> None:
        """Force and dry-run are chosen in the dialog; it answers with the request to run, or None."""

        def confirmed(answer: ApplyRequest | None) -> None:
            if answer is not None:
                console_app(self).start_apply(answer)
            else:
                self.app.notify("apply cancelled; nothing changed", timeout=3)

        self.app.push_screen(ConfirmApplyScreen(request), confirmed)

    def stage_redeploy(self, service_id: str) -> None:
        """Ask to apply `service_id` again at the commit the manifest names (force: it may be in sync)."""
        item = self.item(service_id)
        doc = self.document
        if item is None or doc is None:
            return
        blocker = apply_blocker(self.environment, [item], self.query_one(PlanPane).enabled)
        if blocker:
            self.app.notify(blocker, title="Redeploy refused", severity="error", timeout=8)
            return
        self.confirm_apply(ApplyRequest(self.environment, doc, (item,), force=True, dry_run=False))

    def select_service(self, service_id: str) -> None:
        if not self.query_one(ServiceGrid).select(service_id):
            self.filter_text = ""
            self.query_one("#filter", Input).value = ""
            self.call_after_refresh(self.query_one(ServiceGrid).select, service_id)
        self.query_one(ServiceGrid).focus()
