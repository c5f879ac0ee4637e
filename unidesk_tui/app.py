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
from unidesk_tui.documents import JobRecord
from unidesk_tui.messages import JobsListed, JobStarted
from unidesk_tui.model import JOB_ACTIVE, JOB_TERMINAL, Environment, LiveReader
from unidesk_tui.screens.confirm_apply import ApplyRequest
from unidesk_tui.screens.help import HelpScreen
from unidesk_tui.screens.job_log import JobLogScreen
from unidesk_tui.screens.jobs_list import JobsScreen
from unidesk_tui.screens.main import MainScreen
from unidesk_tui.screens.message_dialog import MessageDialog
from unidesk_tui.screens.palette import JobsProvider, ServicesProvider
from unidesk_tui.widgets.guard import guard_handlers
from unidesk_tui.widgets.present import job_reason, job_shown_status
from unidesk_tui.workspace import Workspace

log = logging.getLogger(__name__)

# styles/ sits beside the package in a checkout; an install ships it inside the package.
_HERE = Path(__file__).resolve().parent
STYLES_DIR = next(
    (p for p in (_HERE.parent / "styles", _HERE / "styles") if (p / "console.tcss").exists()), _HERE.parent / "styles"
)
DEFAULT_REFRESH_S = 5.0
JOBS_POLL_S = 1.0


def default_live_reader() -> LiveReader:
    """The live reader the console uses unless a test gives it another."""
    from unidesk_tui.live import read_live

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
        # Declaring any command_palette binding stops Textual adding its own ctrl+p: name both.
        Binding("ctrl+p", "command_palette", "Palette", key_display="ctrl+p", show=False, priority=True),
        Binding("colon", "command_palette", "Palette", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit_console", "Quit (from the main screen)", show=False),
        Binding("ctrl+c", "force_quit", "Quit", show=False, priority=True),
    ]

    #: Every job in the state directory, newest first (re-read every JOBS_POLL_S).
    jobs: reactive[list[JobRecord]] = reactive(list, always_update=True)

    def __init__(
        self,
        workspace: Workspace,
        *,
        environment: Environment = Environment.FILE,
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
        self._job_status: dict[str, str] = {}  # last seen status per job, to notice a job ending
        # The cached plan of the first environment, read before the event loop starts (no I/O
        # on the loop, and the grid paints from it at once).
        self.preloaded: dict[str, plan_cache.CachedPlan] = {}
        cached = plan_cache.load(workspace.state_dir, workspace.root, environment)
        if cached is not None:
            self.preloaded[environment] = cached

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
        for job in message.jobs:
            before = self._job_status.get(job.id)
            self._job_status[job.id] = job.status
            if self._jobs_seen and before in JOB_ACTIVE and job.status in JOB_TERMINAL:
                self.job_ended(job)
        if not self._jobs_seen:
            self._jobs_seen = True
            active = [j for j in message.jobs if j.status in JOB_ACTIVE]
            if self.reattach and active:
                self.notify(
                    f"job {active[0].id} is still {active[0].status}: reattached to its log",
                    title="Reattached",
                    timeout=5,
                )
                self.open_job(active[0].id)

    def job_ended(self, job: JobRecord) -> None:
        """A job reached its end: a toast naming the reason, and a bell when it failed."""
        viewing = isinstance(self.screen, JobLogScreen) and self.screen.job_id == job.id
        self.clear_notifications()  # "Job started" must not outlive the job
        status = job_shown_status(job)
        if job.status == "succeeded":
            if not viewing:
                self.notify(f"job {job.id} {status}: {', '.join(job.services)}", title="Job finished", timeout=6)
            return
        if job.status == "failed":
            self.bell()
        reason = job_reason(job) or job.status
        self.notify(
            f"{', '.join(job.services)}: {reason}\nl or J opens its log",
            title=f"Job {job.status}: {job.id}",
            severity="error" if job.status == "failed" else "warning",
            timeout=15,
        )

    def _push_bounded(self, screen: Screen) -> None:
        """Push `screen`, first closing any open screen of its kind: the stack stays shallow
        (job log → J → log … would otherwise grow without bound)."""
        kind = type(screen)
        if any(type(s) is kind for s in self.screen_stack[1:]):
            while type(self.screen) is not kind:
                self.pop_screen()
            self.pop_screen()
        self.push_screen(screen)

    def open_job(self, job_id: str) -> None:
        if isinstance(self.screen, JobLogScreen) and self.screen.job_id == job_id:
            return
        self._push_bounded(JobLogScreen(job_id))

    def action_show_jobs(self) -> None:
        if not isinstance(self.screen, JobsScreen):
            self._push_bounded(JobsScreen())

    def yank(self, text: str) -> None:
        """Copy to the terminal's clipboard (OSC 52: works over SSH and in tmux with set-clipboard)."""
        self.copy_to_clipboard(text)
        self.notify(f"copied {text}", timeout=2)

    def confirm_cancel(self, job_id: str) -> None:
        """Ask, then cancel a running job through the job store (the worker stops at a step boundary)."""
        job = next((j for j in self.jobs if j.id == job_id), None)
        if job is None or job.status not in JOB_ACTIVE:
            self.notify(f"job {job_id} is not running", timeout=3)
            return
        body = (
            f"job {job.id} ({job.environment} · {', '.join(job.services)}) is {job.status}.\nCancelling stops its "
            "current step (and that step's command on the target); the job records which step it stopped."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._cancel(job_id)

        self.push_screen(
            MessageDialog(f"Cancel job {job.id}?", body, question=True, yes="cancel the job", no="keep it running"),
            answered,
        )

    @work(thread=True, group="cancel", exit_on_error=False)
    def _cancel(self, job_id: str) -> None:
        from unidesk_tui.errors import UnideskError

        try:
            jobs.cancel(self.workspace.state_dir, job_id)
        except UnideskError as exc:
            self.call_from_thread(
                self.notify,
                "; ".join(f"{p.code}: {p.message}" for p in exc.problems),
                title="Cancel refused",
                severity="error",
                timeout=8,
            )
            return
        self.call_from_thread(self.notify, f"job {job_id}: cancel requested", timeout=4)
        self.call_from_thread(self.poll_jobs)

    def start_apply(self, request: ApplyRequest) -> None:
        """Called only after the confirmation: starts the detached job in a worker."""
        self.notify(f"starting apply of {', '.join(i.id for i in request.items)}…", timeout=3)
        self._apply(request)

    @work(thread=True, group="apply", exit_on_error=False)
    def _apply(self, request: ApplyRequest) -> None:
        from unidesk_tui.apply import apply

        # With the plan the dialog bound, the apply plans again and runs only if nothing moved.
        doc = apply(
            self.workspace,
            file=request.manifest_file,
            env=request.environment.key,
            services=[i.id for i in request.items],
            dry_run=request.dry_run,
            force=request.force,
            read_live=None if request.environment.named else self.read_live,
            saved=request.saved,
        )
        if not doc.ok or not doc.jobId:
            lines = dict.fromkeys(f"✗ {e.code}: {e.message}" for e in doc.errors)  # each refusal once
            stale = bool(doc.errors) and all(e.code == "plan_stale" for e in doc.errors)
            title = "Nothing ran: the plan you confirmed is stale" if stale else "Apply refused"
            body = "\n".join(lines) or "apply returned no job"
            if stale:
                body += "\n\nr refreshes; stage and apply again to review the current plan."
            self.call_from_thread(self.push_screen, MessageDialog(title, body, error=True))
            return
        self.post_message(JobStarted(doc.jobId, request.environment, [i.id for i in request.items]))

    @on(JobStarted)
    def _job_started(self, message: JobStarted) -> None:
        self.notify(f"job {message.job_id} started; it keeps running if you quit", title="Job started", timeout=4)
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
            self.push_screen(HelpScreen(self.screen))

    def action_force_quit(self) -> None:
        """ctrl+c quits from anywhere (asking first only when jobs run)."""
        while len(self.screen_stack) > 1 and not isinstance(self.screen, MessageDialog):
            self.pop_screen()
        if isinstance(self.screen, MessageDialog):
            self.exit(0)
            return
        self.action_quit_console()

    def active_jobs(self) -> list[JobRecord]:
        return [j for j in self.jobs if j.status in JOB_ACTIVE]

    def action_quit_console(self) -> None:
        if self.screen is not self.main_screen:
            self.notify("q quits from the main screen; esc goes back", timeout=3)
            return
        active = self.active_jobs()
        if not active:
            self.exit(0)
            return
        body = "\n".join(
            f"job {j.id} is {j.status} ({', '.join(j.services)}): it continues after the console closes.\n  follow "
            f"it: {follow_hint(j.id)}"
            for j in active
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit(0)

        self.push_screen(
            MessageDialog("Quit while jobs run?", body + "\n\nReopen `unidesk` to reattach.", question=True), answered
        )

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
            self.notify(
                f"{type(error).__name__}: {error}",
                title=f"{event.worker.group or 'background'} failed",
                severity="error",
                timeout=10,
            )


def refresh_interval_from_env() -> float:
    try:
        return float(os.environ.get("UNIDESK_REFRESH_S", DEFAULT_REFRESH_S))
    except ValueError:
        return DEFAULT_REFRESH_S
