"""The Textual console app: shared state (workspace, clock, jobs), job engine calls, navigation."""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from unidesk_tui import jobs, plan_cache
from unidesk_tui.screens.palette import JobsProvider, ServicesProvider
from unidesk_tui.documents import JobRecord
from unidesk_tui.messages import JobsListed, JobStarted
from unidesk_tui.reconcile import LiveReader
from unidesk_tui.screens.confirm_apply import ApplyRequest
from unidesk_tui.screens.help import HelpScreen
from unidesk_tui.screens.job_log import JobLogScreen
from unidesk_tui.screens.jobs_list import JobsScreen
from unidesk_tui.screens.main import MainScreen
from unidesk_tui.screens.message_dialog import MessageDialog
from unidesk_tui.workspace import Workspace
from unidesk_tui.widgets.guard import guard_handlers

log = logging.getLogger(__name__)

# styles/ sits beside the package in a checkout; an install ships it inside the package.
_HERE = Path(__file__).resolve().parent
STYLES_DIR = next((p for p in (_HERE.parent / "styles", _HERE / "styles") if (p / "console.tcss").exists()), _HERE.parent / "styles")
DEFAULT_REFRESH_S = 5.0
JOBS_POLL_S = 1.0


def default_live_reader() -> LiveReader | None:
    """The live reader of this build (None when the live layer is not installed)."""
    try:
        from unidesk_tui.live import read_live
    except ImportError as exc:
        log.warning("live state is not available: %s", exc)
        return None
    return read_live


def follow_hint(job_id: str) -> str:
    return f"unidesk job status {job_id} --tail-bytes 30000"


@guard_handlers
class UnideskApp(App[int]):
    """The operator console. All I/O runs in workers; failures become notifications."""

    CSS_PATH = str(STYLES_DIR / "console.tcss")
    TITLE = "unidesk"
    COMMANDS = App.COMMANDS | {ServicesProvider, JobsProvider}
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("colon", "command_palette", "Palette", show=False),
        Binding("q", "quit_console", "Quit"),
        Binding("ctrl+c", "quit_console", "Quit", show=False, priority=True),
    ]

    #: Every job in the state directory, newest first (re-read every JOBS_POLL_S).
    jobs: reactive[list[JobRecord]] = reactive(list, always_update=True)

    def __init__(
        self,
        workspace: Workspace,
        *,
        environment: str | None = None,
        refresh_interval: float = DEFAULT_REFRESH_S,
        jobs_interval: float = JOBS_POLL_S,
        clock: Callable[[], float] = time.time,
        read_live: LiveReader | None | str = "default",
        reattach: bool = True,
    ) -> None:
        super().__init__()
        self.workspace = workspace
        self.initial_environment = environment
        self.refresh_interval = refresh_interval
        self.jobs_interval = jobs_interval
        self.clock = clock
        self.read_live: LiveReader | None = default_live_reader() if read_live == "default" else read_live  # type: ignore[assignment]
        self.reattach = reattach
        self._jobs_seen = False
        self._polling_jobs = False
        # The cached plan of the first environment, read before the event loop starts (no I/O
        # on the loop, and the grid paints from it at once).
        self.preloaded: dict[str, plan_cache.CachedPlan] = {}
        cached = plan_cache.load(workspace.state_dir, workspace.root, environment)
        if cached is not None:
            self.preloaded[environment or "file"] = cached

    def get_default_screen(self) -> Screen:
        return MainScreen(self.initial_environment)

    @property
    def main_screen(self) -> MainScreen | None:
        screen = self.screen_stack[0] if self.screen_stack else None
        return screen if isinstance(screen, MainScreen) else None

    def on_mount(self) -> None:
        # Everything alive after the first frame (modules, schemas, widgets) lives as long as the
        # app: freezing it keeps full collections from walking it again (those were 150-300 ms
        # pauses while a log streamed).
        self.call_after_refresh(gc.freeze)
        self.poll_jobs()
        if self.jobs_interval > 0:
            self.set_interval(self.jobs_interval, self.poll_jobs, name="jobs")

    # -- jobs ----------------------------------------------------------------------------------

    def poll_jobs(self) -> None:
        if not self._polling_jobs:
            self._polling_jobs = True
            self._read_jobs()

    @work(thread=True, group="jobs", exit_on_error=False)
    def _read_jobs(self) -> None:
        try:
            listed = jobs.list_jobs(self.workspace.state_dir)
        finally:
            self._polling_jobs = False
        self.post_message(JobsListed(listed))

    @on(JobsListed)
    def _jobs_listed(self, message: JobsListed) -> None:
        if message.jobs != self.jobs or not self._jobs_seen:
            self.jobs = message.jobs
        if not self._jobs_seen:
            self._jobs_seen = True
            active = [j for j in message.jobs if j.status in jobs.ACTIVE]
            if self.reattach and active:
                self.notify(f"job {active[0].id} is still {active[0].status}: reattached to its log", title="Reattached", timeout=5)
                self.open_job(active[0].id)

    def open_job(self, job_id: str) -> None:
        if isinstance(self.screen, JobLogScreen) and self.screen.job_id == job_id:
            return
        self.push_screen(JobLogScreen(job_id))

    def action_show_jobs(self) -> None:
        if not isinstance(self.screen, JobsScreen):
            self.push_screen(JobsScreen())

    def start_apply(self, request: ApplyRequest) -> None:
        """Called only after the confirmation: starts the detached job in a worker."""
        self.notify(f"starting apply of {', '.join(i.id for i in request.items)}…", timeout=3)
        self._apply(request)

    @work(thread=True, group="apply", exit_on_error=False)
    def _apply(self, request: ApplyRequest) -> None:
        from unidesk_tui.apply import apply

        doc = apply(
            self.workspace,
            file=request.manifest_file,
            env=request.environment,
            services=[i.id for i in request.items],
            dry_run=request.dry_run,
            force=request.force,
            read_live=None if request.environment else self.read_live,
        )
        if not doc.ok or not doc.jobId:
            body = "\n".join(f"✗ {e.code}: {e.message}" for e in doc.errors) or "apply returned no job"
            self.call_from_thread(self.push_screen, MessageDialog("Apply refused", body, error=True))
            return
        self.post_message(JobStarted(doc.jobId, request.environment, [i.id for i in request.items]))

    @on(JobStarted)
    def _job_started(self, message: JobStarted) -> None:
        self.notify(f"job {message.job_id} started; it keeps running if you quit. Follow: {follow_hint(message.job_id)}", title="Job started", timeout=8)
        main = self.main_screen
        if main is not None:
            main.unstage(message.environment, message.services)
        self.poll_jobs()
        self.open_job(message.job_id)

    # -- navigation ----------------------------------------------------------------------------

    def jump_to_service(self, service_id: str) -> None:
        main = self.main_screen
        if main is None:
            return
        while len(self.screen_stack) > 1:
            self.pop_screen()
        main.select_service(service_id)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def active_jobs(self) -> list[JobRecord]:
        return [j for j in self.jobs if j.status in jobs.ACTIVE]

    def action_quit_console(self) -> None:
        active = self.active_jobs()
        if not active:
            self.exit(0)
            return
        body = "\n".join(f"job {j.id} is {j.status} ({', '.join(j.services)}): it continues after the console closes.\n  follow it: {follow_hint(j.id)}" for j in active)

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit(0)

        self.push_screen(MessageDialog("Quit while jobs run?", body + "\n\nReopen `unidesk` to reattach.", question=True), answered)

    # -- failures ------------------------------------------------------------------------------

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        self.report_worker(event)

    def report_worker(self, event: Worker.StateChanged) -> None:
        """The one place a failed worker (of the app or any screen) becomes a visible error."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            log.warning("worker %s failed: %r", event.worker.name, error)
            if event.worker.group == "refresh":
                main = self.main_screen
                if main is not None:
                    main._refresh_done()
            self.notify(f"{type(error).__name__}: {error}", title=f"{event.worker.group or 'background'} failed", severity="error", timeout=10)


def refresh_interval_from_env() -> float:
    try:
        return float(os.environ.get("UNIDESK_REFRESH_S", DEFAULT_REFRESH_S))
    except ValueError:
        return DEFAULT_REFRESH_S
