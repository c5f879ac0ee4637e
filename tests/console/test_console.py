"""Pilot tests of the console on real git workspaces, the real live reader and real job files.

The workspace's targets point at closed local ports, so the real live reader reports them
`unreachable`; environment mode reads real `deploy/dev` and `deploy/prod` branches.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from textual.command import CommandPalette
from textual.widgets import DataTable, Input, Log

from tests.console.conftest import SIZE, ConsoleWorld, record_job, step
from tests.console.helpers import bound, console, grid, make_app, row_ids, settle, wait_until
from unidesk_tui import jobs, plan_cache
from unidesk_tui.documents import Operator
from unidesk_tui.live import read_live
from unidesk_tui.model import JOB_ACTIVE, Environment
from unidesk_tui.screens.confirm_apply import ConfirmApplyScreen
from unidesk_tui.screens.help import HelpScreen
from unidesk_tui.screens.job_log import JobLogScreen
from unidesk_tui.screens.jobs_list import JobsScreen
from unidesk_tui.screens.message_dialog import MessageDialog
from unidesk_tui.screens.service_detail import ServiceDetailScreen
from unidesk_tui.widgets.plan_pane import PlanPane
from unidesk_tui.widgets.service_grid import ServiceGrid
from unidesk_tui.widgets.status_header import StatusHeader

RUNNING_JOB = "20261127T035800Z-0a1b2c"


class TestGrid:
    async def test_rows_come_from_a_real_check(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            assert row_ids(app) == ["backend-core", "code-queue", "code-queue-mgr", "frontend", "node-exporter"]
            doc = app.main_screen.document
            states = {i.id: i.live.state if i.live else None for i in doc.services}
            assert states["backend-core"] == "unreachable"
            assert states["node-exporter"] == "unsupported"
            cell = grid(app).get_cell("backend-core", "state")
            assert "⊘" in cell.plain and "unreachable" in cell.plain
            # the full commit was resolved through the remote
            assert grid(app).get_cell("frontend", "desired").plain == world.commits[1][:7]

    async def test_refresh_keeps_cursor_and_scroll(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            await pilot.press("j", "j", "j")
            assert grid(app).selected_id == "frontend"
            # change the desired state underneath: frontend moves to the newest commit
            manifest = (world.workspace / "deploy.json").read_text().replace(world.commits[1], world.commits[2])
            (world.workspace / "deploy.json").write_text(manifest)
            await pilot.press("r")
            await settle(pilot, app)
            assert grid(app).get_cell("frontend", "desired").plain == world.commits[2][:7]
            assert grid(app).selected_id == "frontend"
            assert grid(app).cursor_row == 3

    async def test_filter_and_clear(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            await pilot.press("slash", *"queue")
            assert row_ids(app) == ["code-queue", "code-queue-mgr"]
            await pilot.press("enter")
            assert isinstance(app.focused, ServiceGrid)
            await pilot.press("escape")
            assert len(row_ids(app)) == 5
            assert not app.main_screen.query_one("#filter", Input).display

    async def test_sort_by_state_puts_problems_first(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            app.main_screen.sort_column = "state"
            await pilot.pause()
            assert row_ids(app)[-1] == "node-exporter"  # unsupported sorts after unreachable
            await pilot.press("S")
            assert row_ids(app)[0] == "node-exporter"

    async def test_detail_shows_full_shas_and_reason(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            await pilot.press("enter")
            assert isinstance(app.screen, ServiceDetailScreen)
            assert app.screen.item.id == "backend-core"
            text = str(app.screen.query_one("#detail-body Static").render())
            assert world.commits[2] in text
            assert "unreachable" in text
            await pilot.press("escape")
            assert app.main_screen is app.screen


class TestNavigation:
    async def test_help_lists_the_keys(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            text = str(app.screen.query_one("VerticalScroll Static").render())
            for key in ("space", "Stage", "Filter", "Diff", "ctrl+p", "Stage all drifted", "in-sync"):
                assert key in text
            await pilot.press("escape")
            assert app.screen is app.main_screen
            # on the jobs list, help names that screen's keys, not the grid's
            await pilot.press("J", "question_mark")
            text = str(app.screen.query_one("VerticalScroll Static").render())
            assert "Open log" in text and "Cancel job" in text and "Stage" not in text

    async def test_palette_jumps_to_a_service(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            await pilot.press("colon")
            assert isinstance(app.screen, CommandPalette)
            await pilot.press(*"service frontend")
            for _ in range(100):
                await pilot.pause(0.05)
                if app.screen.query("CommandList Option") or app.screen.query(".option-list--option"):
                    break
            await pilot.pause(0.2)
            await pilot.press("enter")
            await pilot.pause(0.2)
            assert app.screen is app.main_screen
            assert grid(app).selected_id == "frontend"


class TestCache:
    async def test_first_paint_comes_from_the_cache_marked_stale(self, world: ConsoleWorld) -> None:
        async with console(world):
            pass  # a first refresh, landed: it writes the plan cache
        cached = plan_cache.load(world.state_dir, world.workspace, Environment.FILE)
        assert cached is not None and len(cached.document.services) == 5

        # Reopen with a live reader that never finishes first: the grid is painted from cache.
        def slow_read_live(catalog, desired):
            time.sleep(1.0)  # the first real refresh is still running while we look
            return read_live(catalog, desired)

        app2 = make_app(world, read_live=slow_read_live)
        async with app2.run_test(size=SIZE) as pilot:
            header = app2.main_screen.query_one(StatusHeader)
            for _ in range(100):
                await pilot.pause(0.01)
                if app2.main_screen.document is not None and header.refreshing:
                    break
            assert header.stale and header.refreshing
            assert len(row_ids(app2)) == 5
            await pilot.press("j")  # the check runs in a worker: keys are handled meanwhile
            assert grid(app2).selected_id == "code-queue" and header.refreshing
            await settle(pilot, app2)
            assert not header.stale


class TestEnvironments:
    async def test_switch_to_dev_shows_the_dry_run_environment_plan(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            await pilot.press("2")
            await settle(pilot, app)
            doc = app.main_screen.document
            assert doc.source.kind == "env" and doc.source.ref == "origin/deploy/dev"
            assert doc.environment.namespace == "unidesk-dev"
            assert row_ids(app) == ["backend-core", "code-queue", "code-queue-mgr", "frontend"]
            assert "planned" in grid(app).get_cell("backend-core", "state").plain
            header = str(app.main_screen.query_one(StatusHeader).render())
            assert doc.source.manifestCommit[:12] in header and "unidesk-dev" in header
            await pilot.press("e")  # dev -> prod
            await settle(pilot, app)
            assert app.main_screen.document.source.ref == "origin/deploy/prod"
            assert len(row_ids(app)) == 3


class TestPlanAndApply:
    async def test_stage_and_unstage(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            await pilot.press("space", "j", "space")
            pane = app.main_screen.query_one(PlanPane)
            assert [i.id for i in pane.items] == ["backend-core", "code-queue"]
            assert grid(app).get_cell("backend-core", "mark").plain == "●"
            await pilot.press("k", "space")
            assert [i.id for i in pane.items] == ["code-queue"]
            await pilot.press("x")  # unstage all, with an undo
            assert pane.items == []
            await pilot.press("u")
            assert [i.id for i in pane.items] == ["code-queue"]

    async def test_cancel_changes_nothing(self, world: ConsoleWorld) -> None:
        async with console(world, "2") as (app, pilot):
            await pilot.press("space", "a")
            assert isinstance(app.screen, ConfirmApplyScreen)
            await pilot.press("n")
            assert app.screen is app.main_screen
            await pilot.pause(0.2)
            assert jobs.list_jobs(world.state_dir) == []
            await pilot.press("a", "escape")
            assert app.screen is app.main_screen
            assert jobs.list_jobs(world.state_dir) == []

    async def test_confirm_starts_a_detached_job_and_streams_it(self, world: ConsoleWorld) -> None:
        async with console(world, "2") as (app, pilot):
            await pilot.press("space", "a", "d")  # backend-core; dry-run chosen in the dialog
            dialog = app.screen
            assert isinstance(dialog, ConfirmApplyScreen)
            assert dialog.request.dry_run and not dialog.request.force
            await bound(pilot, app)  # the dialog binds the plan it shows; y waits for that
            text = str(dialog.query_one("#confirm-body Static").render())
            assert "DEV" in text and "D601" in text and world.commits[2] in text and "dry run" in text
            await pilot.press("y")
            await wait_until(pilot, lambda: isinstance(app.screen, JobLogScreen), "the job view")
            listed = jobs.list_jobs(world.state_dir)
            assert [j.id for j in listed] == [app.screen.job_id]
            assert listed[0].dryRun and listed[0].services == ["backend-core"] and listed[0].environment == "dev"
            await wait_until(pilot, lambda: app.screen.lines_written > 0, "the job's log lines")
            jobs_done = [j for j in jobs.list_jobs(world.state_dir) if j.status in JOB_ACTIVE]
            for job in jobs_done:  # let the detached worker finish before the fixture is reused
                for _ in range(600):
                    if jobs.load_job(world.state_dir, job.id).status not in JOB_ACTIVE:
                        break
                    await asyncio.sleep(0.05)

    async def test_prod_apply_is_disabled_with_the_reason(self, world: ConsoleWorld) -> None:
        async with console(world, "3") as (app, pilot):
            await pilot.press("space", "a")
            assert app.screen is app.main_screen  # no confirmation is offered
            pane_text = str(app.main_screen.query_one(PlanPane).render())
            assert "apply disabled" in pane_text and "prod_apply_disabled" in pane_text
            assert jobs.list_jobs(world.state_dir) == []

    async def test_dev_refuses_services_outside_the_slice_before_confirming(self, world: ConsoleWorld) -> None:
        async with console(world, "2") as (app, pilot):
            grid(app).select("code-queue-mgr")
            await pilot.press("space", "a")
            assert app.screen is app.main_screen
            pane_text = str(app.main_screen.query_one(PlanPane).render())
            assert "service_not_enabled" in pane_text and "code-queue-mgr" in pane_text


class TestJobs:
    def _record_running(self, world: ConsoleWorld) -> None:
        record_job(
            world,
            RUNNING_JOB,
            status="running",
            alive=True,
            steps=[
                step("backend-core", "source", "succeeded", 90, 4.2),
                step("backend-core", "build", "running", 85),
                step("backend-core", "verify", "pending"),
            ],
            events=[
                ("backend-core", "source", "stdout", "target_source_proxy=direct (main server)"),
                ("backend-core", "build", "stdout", "#1 building"),
            ],
        )

    async def test_reopening_reattaches_to_a_running_job(self, world: ConsoleWorld) -> None:
        self._record_running(world)
        app = make_app(world)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(
                pilot, lambda: isinstance(app.screen, JobLogScreen) and app.screen.lines_written, "the job view", 200
            )
            screen = app.screen
            assert isinstance(screen, JobLogScreen) and screen.job_id == RUNNING_JOB
            # a line the worker writes now streams in
            jobs.EventLog(world.state_dir, RUNNING_JOB).append(
                "#2 exporting layers", service="backend-core", step="build"
            )
            await wait_until(
                pilot,
                lambda: any("exporting layers" in line for line in screen.query_one(Log).lines),
                "the new line",
                200,
            )
            await pilot.press("J")
            assert isinstance(app.screen, JobsScreen)
            table = app.screen.query_one(DataTable)
            assert "running" in table.get_cell(RUNNING_JOB, "status").plain

    async def test_jobs_screen_shows_who_ran_each_job(self, world: ConsoleWorld) -> None:
        done = "20261127T035000Z-0d0e0f"
        record_job(
            world,
            done,
            status="succeeded",
            steps=[step("backend-core", "verify", "succeeded", 20, 1.0)],
            events=[(None, None, "engine", "job succeeded")],
        )
        who = Operator(user="alice", host="controller-1", workspace=str(world.workspace))
        jobs.update_job(world.state_dir, done, lambda r: r.model_copy(update={"operator": who}))
        async with console(world, reattach=False) as (app, pilot):
            await pilot.press("J")
            assert isinstance(app.screen, JobsScreen)
            await pilot.pause()
            assert app.screen.query_one(DataTable).get_cell(done, "operator").plain == "alice@controller-1"

    async def test_quitting_while_a_job_runs_says_it_continues(self, world: ConsoleWorld) -> None:
        self._record_running(world)
        async with console(world, reattach=False) as (app, pilot):
            strip = app.main_screen.query_one("#jobs-strip")
            assert strip.display and RUNNING_JOB in str(strip.render())
            await pilot.press("q")
            assert isinstance(app.screen, MessageDialog)
            body = str(app.screen.query_one("#message-body").render())
            assert RUNNING_JOB in body and f"unidesk job status {RUNNING_JOB}" in body and "continues" in body
            await pilot.press("n")
            assert app.screen is app.main_screen


class TestFailures:
    async def test_a_broken_config_is_shown_not_raised(self, world: ConsoleWorld) -> None:
        (world.workspace / "config.json").write_text("{ not json")
        async with console(world) as (app, pilot):
            header = str(app.main_screen.query_one(StatusHeader).render())
            assert "config_invalid" in header
            assert app.main_screen.document.errors[0].code == "config_invalid"
            await pilot.press("space", "a")  # nothing to stage or apply: still no crash
            assert app.is_running

    async def test_a_failing_handler_becomes_a_notification(self) -> None:
        from textual.app import App

        from unidesk_tui.widgets.guard import guard_handlers

        @guard_handlers
        class Broken(App):
            BINDINGS = [("b", "boom", "Boom")]

            def action_boom(self) -> None:
                raise RuntimeError("disk on fire")

        app = Broken()
        async with app.run_test() as pilot:
            await pilot.press("b")
            await pilot.pause()
            assert app.is_running
            assert any("disk on fire" in str(n.message) for n in app._notifications)


def test_headless_has_no_running_console() -> None:
    """`unidesk` without a terminal refuses the console and answers like any command: JSON."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import sys; from unidesk_tui.cli import main; sys.exit(main([]))"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert out.returncode == 2
    assert "console needs a terminal" in out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is False and doc["errors"][0]["code"] == "usage"
    assert "\x1b" not in out.stdout  # no terminal output leaked


class TestStateColours:
    async def test_state_cells_render_in_distinct_colours(self, world: ConsoleWorld) -> None:
        """The STATE cell of each row reaches the screen in its state's own colour (shape + colour),
        not in the row's colour; drift and degraded differ too."""
        from unidesk_tui.documents import LiveState

        async with console(world) as (app, pilot):
            main = app.main_screen
            doc = main.documents["file"]
            old = world.commits[0]
            states = {
                "backend-core": LiveState(state="drift", commit=old, health="healthy"),
                "frontend": LiveState(state="in-sync", commit=world.commits[1], health="healthy"),
                "code-queue": LiveState(state="degraded", commit=old, health="unhealthy"),
                "code-queue-mgr": LiveState(state="missing", health="unknown"),
            }
            main.documents["file"] = doc.model_copy(
                update={
                    "services": [
                        i.model_copy(
                            update={
                                "live": states[i.id],
                                "action": "noop" if states[i.id].state == "in-sync" else "deploy",
                            }
                        )
                        if i.id in states
                        else i
                        for i in doc.services
                    ]
                }
            )
            main._render_all()
            await pilot.pause()
            g = grid(app)
            colours: dict[str, object] = {}
            row_colours = set()
            for cursor in (0, len(g.row_keys) - 1):  # the rows off the cursor are what is checked
                g.cursor_row = cursor
                await pilot.pause()
                for y in range(1, len(g.row_keys) + 1):
                    if y - 1 == cursor:
                        continue
                    for segment in g.render_line(y):
                        for word in ("drift", "degraded", "missing", "in-sync", "unsupported"):
                            if word in segment.text:
                                colours[word] = segment.style.color
                        if segment.text.strip() == g.row_keys[y - 1]:
                            row_colours.add(segment.style.color)
            assert set(colours) == {"drift", "degraded", "missing", "in-sync", "unsupported"}, colours
            assert len(set(colours.values())) == 5, colours
            assert not row_colours & set(colours.values()), (row_colours, colours)


class TestHungHost:
    async def test_header_names_the_hosts_still_waited_for(self, world: ConsoleWorld) -> None:
        """One slow host: once the others answered, the header names it instead of calling the
        whole (partly fresh) screen stale."""
        app = make_app(world)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)  # fills the plan cache

        def hung_d601(catalog, desired):
            if any(d.target == "D601" for d in desired):
                time.sleep(1.5)
            return read_live(catalog, desired)

        app2 = make_app(world, read_live=hung_d601)
        async with app2.run_test(size=SIZE) as pilot:
            main = app2.main_screen
            header = main.query_one(StatusHeader)
            for _ in range(200):
                await pilot.pause(0.01)
                if main._waiting == {"D601"}:
                    break
            assert main._waiting == {"D601"}
            await pilot.pause()
            text = str(header.render())
            assert "waiting: D601" in text and "STALE" not in text, text
            await settle(pilot, app2)
            assert "waiting" not in str(header.render())
