"""SVG snapshots of real console states (stored in the top-level snapshots/ folder).

Grids come from real checks on a real git workspace (its targets refuse connections, so the real
live reader reports them unreachable) or from the lab; job views from job files recorded through
the real job store. The clock is injected and animations are off, so the pictures are stable.
"""

from __future__ import annotations

from tests.console.conftest import SIZE, ConsoleWorld, record_job, stale_health, step
from tests.console.helpers import bound, settle, still_app, wait_until
from unidesk_tui.app import UnideskApp
from unidesk_tui.documents import LayerCheck
from unidesk_tui.screens.job_log import JobLogScreen

FAILED_JOB = "20261127T035500Z-5e1f0a"
RUNNING_JOB = "20261127T035800Z-0a1b2c"


async def _dev_confirmation(pilot, app: UnideskApp) -> None:
    """Dev, backend-core staged (the one service of this world dev apply accepts), the dialog bound."""
    await pilot.press("2")
    await settle(pilot, app)
    await pilot.press("space", "a")
    await bound(pilot, app)
    await pilot.pause()


async def _varied_grid(pilot, app: UnideskApp, world: ConsoleWorld) -> None:
    await settle(pilot, app)
    _vary_states(app, world)
    await pilot.pause()


async def _wait_job_view(pilot, app: UnideskApp, job_id: str) -> None:
    def shown() -> bool:
        screen = app.screen
        return (
            isinstance(screen, JobLogScreen)
            and screen.job_id == job_id
            and screen.job is not None
            and bool(screen.lines_written)
        )

    await wait_until(pilot, shown, f"the view of job {job_id}")
    await pilot.pause(0.3)  # one more poll: nothing new arrives, the picture is final


async def _opened_job(pilot, app: UnideskApp, job_id: str) -> None:
    """The job's view, opened from the settled grid."""
    await settle(pilot, app)
    app.open_job(job_id)
    await _wait_job_view(pilot, app, job_id)


class TestGridSnapshots:
    def test_unreachable_hosts(self, world: ConsoleWorld, snap_compare) -> None:
        """Both targets refuse SSH: their rows turn unreachable; the image-only service is unsupported."""
        app = still_app(world)
        assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: settle(pilot, app))

    def test_confirmation_dialog(self, world: ConsoleWorld, snap_compare) -> None:
        app = still_app(world)

        assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: _dev_confirmation(pilot, app))

    def test_prod_apply_disabled(self, world: ConsoleWorld, snap_compare) -> None:
        app = still_app(world)

        async def run_before(pilot) -> None:
            await pilot.press("3")
            await settle(pilot, app)
            await pilot.press("space", "a")
            await pilot.pause()

        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


class TestJobSnapshots:
    def test_running_job_streaming_log(self, world: ConsoleWorld, snap_compare) -> None:
        """Reopening the console reattaches to the running job and shows its live log."""
        sha = world.commits[2]
        record_job(
            world,
            RUNNING_JOB,
            status="running",
            alive=True,
            steps=[
                step("backend-core", "resolve-compose", "succeeded", 94, 0.4, readOnly=True),
                step("backend-core", "proxy-probe", "succeeded", 93, 0.2, readOnly=True),
                step("backend-core", "source", "succeeded", 92, 3.1),
                step("backend-core", "build", "running", 88),
                step("backend-core", "rollout", "pending"),
                step("backend-core", "verify", "pending"),
            ],
            events=[
                (
                    "backend-core",
                    None,
                    "engine",
                    f"backend-core: deploy {sha[:12]} on main-server (unidesk-direct): running "
                    f"{world.commits[1][:12]}, desired {sha[:12]}",
                ),
                ("backend-core", "resolve-compose", "stdout", "compose project unidesk, service backend-core"),
                (
                    "backend-core",
                    "proxy-probe",
                    "stdout",
                    "target_source_proxy=none (main server, requiresProxy=false)",
                ),
                ("backend-core", "source", "stdout", f"fetching {sha} into the target mirror"),
                ("backend-core", "source", "stdout", f"git archive {sha[:12]} -> build context"),
                ("backend-core", "build", "stdout", "target_build_cache_from=unidesk-sample:main"),
                ("backend-core", "build", "stdout", "target_build_cache_to=type=inline"),
                *[("backend-core", "build", "stdout", f"#{i} [{i}/6] RUN step {i}") for i in range(1, 7)],
            ],
        )
        app = still_app(world)
        assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: _wait_job_view(pilot, app, RUNNING_JOB))

    def test_failed_verification(self, world: ConsoleWorld, snap_compare) -> None:
        """A healthy old version fails verification, and the view names the layer that disagreed."""
        stale = stale_health(world)
        want, old = stale.want, stale.old
        record_job(
            world,
            FAILED_JOB,
            status="failed",
            steps=[
                step("backend-core", "resolve-compose", "succeeded", 94, 0.4, readOnly=True),
                step("backend-core", "proxy-probe", "succeeded", 93, 0.2, readOnly=True),
                step("backend-core", "source", "succeeded", 92, 3.1),
                step("backend-core", "build", "succeeded", 88, 21.5),
                step("backend-core", "rollout", "succeeded", 66, 2.3),
                step(
                    "backend-core",
                    "verify",
                    "failed",
                    63,
                    60.0,
                    code="verification_failed",
                    message=stale.message,
                    verification=[
                        LayerCheck(layer="image", what="unidesk.ai/source-commit", expected=want, actual=want, ok=True),
                        LayerCheck(layer="env", what="UNIDESK_DEPLOY_COMMIT", expected=want, actual=want, ok=True),
                        LayerCheck(layer="health", what="status", expected="healthy", actual="healthy", ok=True),
                        LayerCheck(layer="health", what="deploy.commit", expected=want, actual=old, ok=False),
                    ],
                ),
            ],
            plan=stale.plan(),
            result=stale.result(),
            events=[
                (
                    "backend-core",
                    "rollout",
                    "stdout",
                    "docker compose up -d --no-build --no-deps --force-recreate backend-core",
                ),
                *stale.verify_events(),
            ],
        )
        app = still_app(world)

        assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: _opened_job(pilot, app, FAILED_JOB))


def _vary_states(app, world: ConsoleWorld) -> None:
    """Give the real check's rows one live state each, so the picture shows every colour: the
    grid's rendering is what is photographed (the states themselves are tested on the lab)."""
    from unidesk_tui.documents import LiveState

    main = app.main_screen
    doc = main.documents["file"]
    old = world.commits[0]
    states = {
        "backend-core": LiveState(state="drift", commit=old, health="healthy"),
        "frontend": LiveState(state="in-sync", commit=world.commits[1], health="healthy"),
        "code-queue": LiveState(
            state="progressing", commit=old, health="unknown", message="rollout under way (0/1 updated, 0 available)"
        ),
        "code-queue-mgr": LiveState(
            state="runtime-unreachable", health="unknown", message="main-server answers SSH, but not its runtime"
        ),
    }
    main.documents["file"] = doc.model_copy(
        update={
            "services": [
                i.model_copy(
                    update={"live": states[i.id], "action": "noop" if states[i.id].state == "in-sync" else "deploy"}
                )
                if i.id in states
                else i
                for i in doc.services
            ]
        }
    )
    main._render_all()


class TestDailySnapshots:
    def test_coloured_grid(self, world: ConsoleWorld, snap_compare) -> None:
        """Shape and colour per state, the running commit that differs highlighted, the summary line."""
        app = still_app(world)

        assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: _varied_grid(pilot, app, world))

    def test_80x24(self, world: ConsoleWorld, snap_compare) -> None:
        """id, state, desired and running stay; the confirmation fits."""
        app = still_app(world)

        assert snap_compare(app, terminal_size=(80, 24), run_before=lambda pilot: _dev_confirmation(pilot, app))

    def test_wide_layout_side_pane(self, world: ConsoleWorld, snap_compare) -> None:
        app = still_app(world)

        assert snap_compare(app, terminal_size=(200, 50), run_before=lambda pilot: _varied_grid(pilot, app, world))

    def test_diff_view(self, world: ConsoleWorld, snap_compare) -> None:
        from unidesk_tui.screens.diff import DiffScreen

        app = still_app(world)

        async def run_before(pilot) -> None:
            await _varied_grid(pilot, app, world)
            app.main_screen.select_service("backend-core")
            await pilot.press("d")
            await wait_until(
                pilot, lambda: isinstance(app.screen, DiffScreen) and app.screen.changes is not None, "the diff", 200
            )
            await pilot.pause()

        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)

    def test_log_search(self, world: ConsoleWorld, snap_compare) -> None:
        from tests.console.test_daily import failed_job

        failed_job(world)
        app = still_app(world)

        async def run_before(pilot) -> None:
            await _opened_job(pilot, app, FAILED_JOB)
            await pilot.press("slash", *"layer 3", "enter", "N")
            await pilot.pause()

        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
