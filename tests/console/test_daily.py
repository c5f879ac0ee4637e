"""The console for daily use (issue 14): colour, layout, mouse, keys, history, diff, log viewer,
alerts and the streaming refresh, on the real git workspace of conftest and real job files."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.conftest import FIXED_NOW, SIZE, ConsoleWorld, record_job, stale_health, step
from tests.console.helpers import console, grid, make_app, row_ids, settle, silent_main_server, wait_until
from unidesk_tui import jobs
from unidesk_tui.changes import commit_range
from unidesk_tui.documents import LayerCheck, LiveState, PlanItem
from unidesk_tui.screens.confirm_apply import ConfirmApplyScreen
from unidesk_tui.screens.diff import DiffScreen
from unidesk_tui.screens.job_log import JobLogScreen, LogView
from unidesk_tui.screens.jobs_list import JobsScreen
from unidesk_tui.screens.message_dialog import MessageDialog
from unidesk_tui.screens.service_detail import ServiceDetailScreen
from unidesk_tui.widgets.present import STATES, Palette, last_job_cell, summary_text

FAILED_JOB = "20261127T035500Z-5e1f0a"
RUNNING_JOB = "20261127T035800Z-0a1b2c"
DRY_JOB = "20261127T035000Z-d1d1d1"


def failed_job(world: ConsoleWorld, job_id: str = FAILED_JOB, status: str = "failed", alive: bool = False) -> None:
    stale = stale_health(world)
    want, old = stale.want, stale.old
    steps = [
        step("backend-core", "source", "succeeded", 92, 3.1),
        step("backend-core", "build", "succeeded", 88, 21.5),
        step(
            "backend-core",
            "verify",
            status if status != "running" else "running",
            63,
            None if status == "running" else 60.0,
            **(
                {
                    "code": "verification_failed",
                    "message": stale.message,
                    "verification": [
                        LayerCheck(layer="image", what="unidesk.ai/source-commit", expected=want, actual=want, ok=True),
                        LayerCheck(layer="health", what="deploy.commit", expected=want, actual=old, ok=False),
                    ],
                }
                if status == "failed"
                else {}
            ),
        ),
    ]
    record_job(
        world,
        job_id,
        status=status,
        alive=alive,
        steps=steps,
        plan=stale.plan(),
        result=stale.result() if status == "failed" else None,
        events=[
            ("backend-core", "build", "stderr", "#8 DONE 0.0s"),
            ("backend-core", "build", "stdout", "#9 exporting to image"),
            *[
                ("backend-core", "build", "stdout", f"#10 layer {i} pushed to the build cache " + "x" * 80)
                for i in range(40)
            ],
            *stale.verify_events(),
        ],
    )


# -- colour --------------------------------------------------------------------------------------


def test_every_state_has_its_own_shape() -> None:
    symbols = [symbol for symbol, _style in STATES.values()]
    assert len(set(symbols)) == len(symbols)
    for name in ("progressing", "degraded", "runtime-unreachable"):
        assert name in STATES and STATES[name][0] != STATES["missing"][0]


def test_a_dry_run_is_not_shown_as_succeeded(world: ConsoleWorld) -> None:
    record_job(
        world,
        DRY_JOB,
        status="succeeded",
        steps=[],
        events=[],
    )
    job = jobs.load_job(world.state_dir, DRY_JOB).model_copy(update={"dryRun": True})
    cell = last_job_cell(job, FIXED_NOW).plain
    assert "dry-run" in cell and "succeeded" not in cell
    assert "10s ago" in cell  # counted from its end, not its start (94 s ago)


class TestColour:
    async def test_states_take_theme_colours_and_a_summary_counts_them(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            palette = Palette.of(app)
            theme = app.get_css_variables()
            assert palette.style("$error").lower() == theme["error"].lower()
            unreachable = grid(app).get_cell("backend-core", "state")
            unsupported = grid(app).get_cell("node-exporter", "state")
            assert theme["error"].lower() in str(unreachable.style).lower()
            assert str(unreachable.style) != str(unsupported.style)
            title = grid(app).border_title
            assert "4 unreachable" in str(title) and "1 unsupported" in str(title)
            assert (
                summary_text(["drift", "drift", "missing", "in-sync"]).plain == "∅ 1 missing · ≠ 2 drift · ✓ 1 in-sync"
            )

    async def test_prod_is_marked(self, world: ConsoleWorld) -> None:
        async with console(world, "3") as (app, pilot):
            assert app.main_screen.has_class("-prod")
            assert "PROD" in str(grid(app).border_title)


# -- layout and mouse ----------------------------------------------------------------------------


class TestLayout:
    async def test_80x24_keeps_id_state_desired_running_and_dialogs_fit(self, world: ConsoleWorld) -> None:
        async with console(world, "2", size=(80, 24)) as (app, pilot):
            shown = grid(app)._shown
            assert {"id", "state", "desired", "running"} <= set(shown)
            line = grid(app).render_line(1).text
            assert "backend-core" in line and "◇ planned" in line
            await pilot.press("space", "a")
            assert isinstance(app.screen, ConfirmApplyScreen)
            dialog = app.screen.query_one("#confirm-dialog")
            assert dialog.region.right <= 80 and dialog.region.bottom <= 24
            await pilot.pause()
            keys = app.screen.query_one("#confirm-keys")
            assert keys.region.height == 1 and keys.region.bottom < dialog.region.bottom  # the keys line is not cut

    async def test_wide_terminal_shows_the_side_pane(self, world: ConsoleWorld) -> None:
        async with console(world, size=(200, 50)) as (app, pilot):
            side = app.main_screen.query_one("#side")
            assert side.display
            await pilot.press("j")
            await pilot.pause()
            assert "code-queue" in str(side.render())
        async with console(world) as (narrow, pilot):
            assert not narrow.main_screen.query_one("#side").display

    async def test_a_click_selects_the_clicked_row(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            # widget row 0 is the border, row 1 the header: row 3 is the second service
            await pilot.click("#grid", offset=(5, 3))
            assert grid(app).selected_id == row_ids(app)[1]

    async def test_an_empty_filter_result_says_so(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            await pilot.press("slash", *"zzz")
            await pilot.pause()
            assert row_ids(app) == []
            assert "no service matches" in grid(app).render_line(1).text


# -- keys ----------------------------------------------------------------------------------------


class TestKeys:
    async def test_stage_all_drifted_and_yank(self, world: ConsoleWorld) -> None:
        async with console(world, "2") as (app, pilot):
            await pilot.press("plus")
            # what dev apply accepts: backend-core (isolated dev override); not code-queue and frontend
            # (in the slice, but this world gives them no dev override), nor code-queue-mgr (outside it)
            assert app.main_screen.staged_ids == ["backend-core"]
            await pilot.press("y")
            assert app.clipboard == world.commits[2]

    async def test_force_and_dry_run_belong_to_the_dialog(self, world: ConsoleWorld) -> None:
        async with console(world, "2") as (app, pilot):
            await pilot.press("space", "a", "f")
            text = str(app.screen.query_one("#confirm-text").render())
            assert "force ON" in text.replace("\n", " ") or "f force ON" in text
            assert "Apply 1 service to dev?" in str(app.screen.query_one("#confirm-title").render())
            await pilot.press("escape", "a")
            assert not app.screen.request.force  # not sticky: a new dialog starts with both off

    async def test_enter_opens_jobs_and_the_stack_stays_shallow_and_q_only_quits_main(
        self, world: ConsoleWorld
    ) -> None:
        failed_job(world)
        async with console(world, reattach=False) as (app, pilot):
            for _ in range(3):
                await pilot.press("J")
                await wait_until(
                    pilot, lambda: isinstance(app.screen, JobsScreen) and app.screen.selected_job(), "jobs list"
                )
                await pilot.press("enter")
                await wait_until(pilot, lambda: isinstance(app.screen, JobLogScreen), "job log")
            assert len(app.screen_stack) <= 3
            await pilot.press("q")
            assert app.is_running and isinstance(app.screen, JobLogScreen)
            await pilot.press("escape")
            assert app.screen is not None and not isinstance(app.screen, JobLogScreen)


# -- detail, history, diff -----------------------------------------------------------------------


class TestDetail:
    async def test_history_and_a_redeploy_that_needs_the_manifest(self, world: ConsoleWorld) -> None:
        failed_job(world)
        old = world.commits[0]
        jobs.update_job(
            world.state_dir,
            FAILED_JOB,
            lambda r: r.model_copy(
                update={"plan": [PlanItem(id="backend-core", commit=old, action="deploy", reason="drift")]}
            ),
        )
        async with console(world, reattach=False) as (app, pilot):
            await pilot.press("enter")
            screen = app.screen
            assert isinstance(screen, ServiceDetailScreen)
            text = str(screen.query_one("#detail-text").render())
            assert text.index("Layers") < text.index("Evidence")
            assert "desired" in text and world.commits[2][:12] in text
            assert "verify" in text  # the last job's reason
            assert [j.id for j in screen.history] == [FAILED_JOB]
            await pilot.press("R")
            assert isinstance(app.screen, MessageDialog)
            body = str(app.screen.query_one("#message-body").render())
            assert f'"commitId": "{old}"' in body and "deploy.json" in body

    def test_commit_range_from_the_mirror(self, world: ConsoleWorld) -> None:
        from unidesk_tui.planning import run_plan

        run_plan(world.ws(), "check")  # resolving fills the mirror
        changes = commit_range(world.state_dir, world.service_url, world.commits[0], world.commits[2])
        assert [c.subject for c in changes.forward] == ["v2", "v1"]
        assert changes.forward[0].author == "Lab Author" and changes.forward[0].sha == world.commits[2]
        assert [f.path for f in changes.files] == ["Dockerfile"]
        back = commit_range(world.state_dir, world.service_url, world.commits[2], world.commits[0])
        assert (
            back.forward == []
            and [c.subject for c in back.backward] == ["v2", "v1"]
            and "rolls back" in (back.note or "")
        )

    async def test_d_opens_the_diff_view(self, world: ConsoleWorld) -> None:
        async with console(world) as (app, pilot):
            main = app.main_screen
            item = main.item("frontend")
            live = LiveState(
                state="drift",
                commit=world.commits[0],
                health="healthy",
                evidence={"layers": {"image label": world.commits[0]}},
            )
            services = main.documents["file"].services
            services[[i.id for i in services].index("frontend")] = item.model_copy(update={"live": live})
            main._render_all()
            grid(app).select("frontend")
            await pilot.press("d")
            assert isinstance(app.screen, DiffScreen)
            await wait_until(pilot, lambda: app.screen.changes is not None, "the commit range")
            text = str(app.screen.query_one("#diff-range").render())
            assert "v1" in text and "Lab Author" in text and "Dockerfile" in text
            await pilot.press("escape")
            assert app.screen is main


# -- log viewer ----------------------------------------------------------------------------------


class TestLogViewer:
    async def test_search_wrap_timestamps_failure_and_save(
        self, world: ConsoleWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        failed_job(world)
        monkeypatch.chdir(tmp_path)
        async with console(world, reattach=False) as (app, pilot):
            app.open_job(FAILED_JOB)
            await wait_until(
                pilot,
                lambda: (
                    isinstance(app.screen, JobLogScreen) and app.screen.job is not None and app.screen.lines_written
                ),
                "the log",
            )
            screen = app.screen
            view = screen.query_one(LogView)
            assert app.focused is view  # the log scrolls without Tab
            lines = list(view.lines)
            assert any("#8 DONE 0.0s" in line for line in lines)
            assert not any(line.startswith("! ") for line in lines)  # stderr progress is no warning
            await pilot.press("slash", *"layer 3", "enter")
            assert len(screen.matches) == 11  # layer 3, 30..39
            assert "search “layer 3”" in str(screen.query_one("#log-status").render())
            last = screen.match_index
            await pilot.press("n")
            assert screen.match_index == (last + 1) % 11
            await pilot.press("N", "N")
            assert screen.match_index == (last - 1) % 11
            before = len(view.lines)
            await pilot.press("w")
            assert len(view.lines) > before  # long lines wrap
            await pilot.press("t")
            assert view.lines[0][:2].isdigit()  # HH:MM:SS first
            await pilot.press("exclamation_mark")
            assert "failing step: backend-core · verify" in str(screen.query_one("#log-status").render())
            await pilot.press("z")
            assert not screen.query_one("#job-steps").display
            await pilot.press("s")
            saved = tmp_path / f"unidesk-job-{FAILED_JOB}.log"
            await wait_until(pilot, saved.exists, "the saved log")
            assert "verification_failed" in saved.read_text()


# -- alerts and timers ---------------------------------------------------------------------------


class TestAlerts:
    async def test_a_job_failing_in_the_background_raises_a_toast_and_a_bell(self, world: ConsoleWorld) -> None:
        failed_job(world, RUNNING_JOB, status="running", alive=True)
        app = make_app(world, reattach=False, jobs_interval=0.1)
        bells = []
        app.bell = lambda: bells.append(1)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            assert "running" in grid(app).get_cell("backend-core", "job").plain

            def fail(record):
                done = [
                    s.model_copy(update={"status": "failed", "message": "verification failed: health is old"})
                    if s.name == "verify"
                    else s
                    for s in record.steps
                ]
                return record.model_copy(update={"status": "failed", "steps": done, "endedAt": record.startedAt})

            jobs.update_job(world.state_dir, RUNNING_JOB, fail)
            await wait_until(pilot, lambda: bells, "the bell")
            toast = [str(n.message) for n in app._notifications]
            assert any("verify" in t and "health is old" in t for t in toast)
            assert not any(n.title == "Job started" for n in app._notifications)
            assert "failed at verify" in grid(app).get_cell("backend-core", "job").plain

    async def test_the_elapsed_time_of_a_hung_job_ticks(self, world: ConsoleWorld) -> None:
        failed_job(world, RUNNING_JOB, status="running", alive=True)
        now = [FIXED_NOW]
        app = make_app(world, clock=lambda: now[0])
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(
                pilot, lambda: isinstance(app.screen, JobLogScreen) and app.screen.job is not None, "reattach"
            )
            header = lambda: str(app.screen.query_one("#job-header").render())  # noqa: E731
            assert "elapsed 1m34s" in header()
            now[0] += 30  # no event arrives; the header moves on its own
            await wait_until(pilot, lambda: "elapsed 2m04s" in header(), "the elapsed time to tick", tries=60)


# -- streaming refresh ---------------------------------------------------------------------------


class TestStreaming:
    async def test_a_silent_host_holds_only_its_own_rows(self, world: ConsoleWorld) -> None:
        """main-server accepts TCP and never speaks SSH; D601 refuses at once: its rows turn
        unreachable while main-server's wait (⟳), then main-server's turn within the connect bound."""
        with silent_main_server(world):
            app = make_app(world)
            async with app.run_test(size=SIZE) as pilot:
                started = time.monotonic()
                await wait_until(
                    pilot,
                    lambda: (
                        "unreachable" in grid(app).get_cell("code-queue", "state").plain
                        if "code-queue" in row_ids(app)
                        else False
                    ),
                    "D601's rows",
                    60,
                )
                assert time.monotonic() - started < 2.0
                assert app.main_screen._refreshing is not None  # the refresh is still waiting on main-server
                assert (
                    "backend-core" in grid(app).waiting
                    and "⟳" in grid(app).render_line(1 + row_ids(app).index("backend-core")).text
                )
                await settle(pilot, app)
                assert "unreachable" in grid(app).get_cell("backend-core", "state").plain
                assert time.monotonic() - started < 8.0  # the connect bound (5 s), not the probe bound


# -- cancel --------------------------------------------------------------------------------------


@contextlib.contextmanager
def running_job(world: ConsoleWorld) -> Iterator[subprocess.Popen]:
    """RUNNING_JOB, run by a real process of its own (never this test), killed afterwards."""
    worker = subprocess.Popen(["sleep", "60"])
    try:
        failed_job(world, RUNNING_JOB, status="running")
        jobs.update_job(
            world.state_dir,
            RUNNING_JOB,
            lambda r: r.model_copy(update={"workerPid": worker.pid, "workerStart": jobs.process_start(worker.pid)}),
        )
        yield worker
    finally:
        worker.kill()
        worker.wait()


class TestCancel:
    async def test_c_asks_then_cancels_the_running_job(self, world: ConsoleWorld) -> None:
        """The worker is a real process of its own (never this test): cancel signals it."""
        with running_job(world) as worker:
            async with console(world, reattach=False) as (app, pilot):
                await pilot.press("c")
                assert isinstance(app.screen, MessageDialog) and RUNNING_JOB in str(
                    app.screen.query_one("#message-title").render()
                )
                await pilot.press("n")
                assert not jobs.cancel_requested(world.state_dir, RUNNING_JOB)
                await pilot.press("c", "y")
                await wait_until(
                    pilot, lambda: jobs.cancel_requested(world.state_dir, RUNNING_JOB), "the cancel request"
                )
                assert worker.wait(timeout=5) == -15  # SIGTERM reached the worker

    async def test_the_job_view_footer_lists_c_while_the_job_can_be_cancelled(self, world: ConsoleWorld) -> None:
        """Trial 2: `c` cancelled from the job view (docs/console.md) but its footer did not say so."""
        from textual.widgets._footer import FooterKey

        def footer_keys(app) -> set[str]:  # the keys the footer shows
            return {key.key for key in app.screen.query(FooterKey)}

        with running_job(world) as worker:
            async with console(world, reattach=False) as (app, pilot):
                app.open_job(RUNNING_JOB)
                await wait_until(
                    pilot,
                    lambda: isinstance(app.screen, JobLogScreen) and app.screen.job is not None,
                    "the job view",
                )
                await pilot.pause()
                assert "c" in footer_keys(app), footer_keys(app)
                worker.kill()
                worker.wait()
                # the worker is gone: the job is recorded interrupted, and there is nothing to cancel
                await wait_until(pilot, lambda: "c" not in footer_keys(app), "c gone from the footer of an ended job")


# -- manifest diff -------------------------------------------------------------------------------


def test_the_manifest_diff_compares_only_what_the_manifest_sets() -> None:
    from unidesk_tui.manifest_diff import object_diff

    rendered = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "code-queue", "namespace": "unidesk"},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"annotations": {"unidesk.ai/deployed-at": "now"}},
                "spec": {"containers": [{"name": "app", "image": "svc:new"}]},
            },
        },
    }
    live = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "code-queue", "namespace": "unidesk", "uid": "1234", "managedFields": [{}]},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"annotations": {"unidesk.ai/deployed-at": "earlier"}},
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "x"},
                        {"name": "app", "image": "svc:old", "imagePullPolicy": "Never"},
                    ]
                },
            },
        },
        "status": {"availableReplicas": 1},
    }
    changed = object_diff(rendered, live)
    assert "-      - image: svc:old" in changed.diff and "+      - image: svc:new" in changed.diff
    assert not any(
        "uid" in line or "status" in line or "deployed-at" in line or "sidecar" in line for line in changed.diff
    )
    same = object_diff(
        rendered,
        {
            **live,
            "spec": {
                **live["spec"],
                "template": {**live["spec"]["template"], "spec": {"containers": [{"name": "app", "image": "svc:new"}]}},
            },
        },
    )
    assert same.diff == []
    assert object_diff(rendered, None).live_missing


def test_the_manifest_diff_says_why_it_has_no_render(world: ConsoleWorld) -> None:
    from unidesk_tui.manifest_diff import manifest_diff

    diff = manifest_diff(world.ws(), "code-queue", None)
    assert diff.manifest == f"k3s/code-queue.k8s.yaml@{world.commits[2][:12]}"
    assert "cannot read k3s/code-queue.k8s.yaml" in (diff.note or "")


# -- the plan-bound confirmation ------------------------------------------------------------------


async def confirmed_plan(pilot, app) -> None:
    await wait_until(
        pilot,
        lambda: (
            isinstance(app.screen, ConfirmApplyScreen) and (app.screen.request.saved is not None or app.screen.refusal)
        ),
        "the bound plan",
    )


class TestBoundPlan:
    async def test_the_dialog_shows_the_bound_plan_and_a_stale_one_runs_nothing(self, world: ConsoleWorld) -> None:
        from tests.console.conftest import _env_branch

        async with console(world, "2") as (app, pilot):
            grid(app).select("backend-core")
            await pilot.press("space", "a", "d")
            await confirmed_plan(pilot, app)
            dialog = app.screen
            assert dialog.request.saved is not None and dialog.request.dry_run
            assert "bound at" in str(dialog.query_one("#confirm-text").render())
            # deploy/dev moves backend-core to another commit after the plan was shown
            url = world.service_url
            moved = (
                '{"schemaVersion": 1, "environment": "dev", "services": ['
                + ", ".join(
                    f'{{"id": "{sid}", "repo": "{url}", "commitId": "{sha[:7]}"}}'
                    for sid, sha in (
                        ("backend-core", world.commits[1]),
                        ("frontend", world.commits[2]),
                        ("code-queue", world.commits[1]),
                        ("code-queue-mgr", world.commits[1]),
                    )
                )
                + "]}\n"
            )
            _env_branch(world.workspace, "dev", moved)
            await pilot.press("y")
            await wait_until(pilot, lambda: isinstance(app.screen, MessageDialog), "the refusal")
            title = str(app.screen.query_one("#message-title").render())
            body = str(app.screen.query_one("#message-body").render())
            assert "stale" in title
            assert (
                "plan_stale" in body
                and "backend-core: commit was " + world.commits[2][:12] in body
                and world.commits[1][:12] in body
            )
            assert jobs.list_jobs(world.state_dir) == []  # nothing ran


# -- states the runtime distinguishes ------------------------------------------------------------


def test_rollouts_in_progress_and_without_replicas_are_not_missing() -> None:
    from executors.k3s import rollout_moving, rollout_text
    from unidesk_tui.model import STATE_ORDER, State

    moving = {"replicas": 1, "updated": 0, "available": 0, "observedGeneration": 2, "generation": 2, "complete": False}
    stuck = {"replicas": 1, "updated": 1, "available": 0, "observedGeneration": 2, "generation": 2, "complete": False}
    assert rollout_moving(moving) and not rollout_moving(stuck)
    assert "no replica available" in rollout_text(stuck)
    for state in (State.PROGRESSING, State.DEGRADED, State.RUNTIME_UNREACHABLE):
        assert state in STATE_ORDER and str(state) in STATES


class TestLiveEnvironmentWording:
    async def test_dialog_and_header_follow_the_live_read(self, world: ConsoleWorld) -> None:
        """After the env view read the runtime (an item in sync: noop), the header no longer says
        "dry-run", and the dialog's why says what the view read and what the apply will do."""
        from unidesk_tui.widgets.status_header import StatusHeader

        async with console(world, "2") as (app, pilot):
            main = app.main_screen
            header = main.query_one(StatusHeader)
            assert "dry-run environment plan" in str(header.render())
            env = main.environment
            doc = main.documents[env]
            first = grid(app).row_keys[0]
            live = LiveState(state="in-sync", commit=main.item(first).commit, health="healthy")
            main.documents[env] = doc.model_copy(
                update={
                    "services": [
                        i.model_copy(update={"live": live, "action": "noop", "reason": "running it on every layer"})
                        if i.id == first
                        else i
                        for i in doc.services
                    ]
                }
            )
            main._render_all()
            await pilot.pause()
            text = str(header.render())
            assert "runtime read live" in text and "dry-run" not in text
            grid(app).select(first)
            await pilot.press("space", "a")
            await wait_until(
                pilot,
                lambda: isinstance(app.screen, ConfirmApplyScreen) and app.screen.request.saved is not None,
                "the binding",
            )
            shown = str(app.screen.query_one("#confirm-text").render())
            assert "live runtime not read" not in shown
            assert "the view read the runtime live (noop: running it on every layer)" in shown
            assert "so it will deploy anyway" in shown


def test_side_pane_layer_labels_do_not_run_into_their_values() -> None:
    """k3s layer names are longer than the old 14-column label: a gap stays before the commit."""
    from unidesk_tui.screens.service_detail import layers_text

    sha = "ad05037d870e" + "0" * 28
    live = LiveState(
        state="in-sync",
        commit=sha,
        health="healthy",
        evidence={"layers": {"backend-core-dev annotation": sha, "frontend-dev env": sha}},
    )
    item = PlanItem(id="backend-core", commit=sha, live=live, action="noop", reason="")
    text = layers_text(item).plain
    assert "backend-core-dev annotation  ad05037d870e" in text, text
    assert "frontend-dev env" + " " * 13 + "ad05037d870e" in text, text
