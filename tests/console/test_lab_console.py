"""The console on the lab: real hosts (sshd, dockerd, the k3s stand-in), real drift, real jobs.

This module brings up its own seeded lab (its own directory and slot), so it can stop a host's
sshd or apply a service without disturbing the session lab other tests share.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.console.conftest import SIZE
from tests.console.helpers import bound, confirmed_job, console, grid, settle, states, still_app
from tests.lab.conftest import lab_skip_reason
from unidesk_tui import jobs
from unidesk_tui.model import JOB_TERMINAL
from unidesk_tui.screens.confirm_apply import ConfirmApplyScreen
from unidesk_tui.widgets.status_header import StatusHeader
from unidesk_tui.workspace import Workspace

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def console_lab():
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    from unidesk_lab import lab as labapi

    # A fresh short directory per run (socket paths stay short; concurrent runs never collide).
    own = not os.environ.get("UNIDESK_CONSOLE_LAB_DIR")
    lab_dir = Path(os.environ.get("UNIDESK_CONSOLE_LAB_DIR") or tempfile.mkdtemp(prefix="udl-console-", dir="/tmp"))
    labapi.down(lab_dir)
    try:
        status = labapi.up(lab_dir, seed=True)
    except BaseException:
        labapi.down(lab_dir)
        raise
    try:
        yield {**status, "labDir": lab_dir}
    finally:
        labapi.down(lab_dir)
        if own:
            shutil.rmtree(lab_dir, ignore_errors=True)


@pytest.fixture
def lab_world(console_lab, tmp_path: Path):
    """The lab workspace with a fresh state directory (no cache, no jobs) for each test."""

    class World:
        workspace = Path(console_lab["workspace"])
        lab_dir = console_lab["labDir"]
        state_dir = tmp_path / "state"

        def ws(self) -> Workspace:
            return Workspace.at(self.workspace, self.state_dir)

    return World()


def test_drift_across_hosts_snapshot(lab_world, snap_compare) -> None:
    """The compose services the lab seeds at an older commit, on main-server and D518, filtered to
    the drifted rows (the k3s rows depend on how far the k3s executor has come, not the console)."""
    app = still_app(lab_world)

    async def run_before(pilot) -> None:
        await settle(pilot, app)
        # the lab lives in a fresh random tmp dir: show a fixed name so the picture is stable
        app.main_screen.query_one(StatusHeader).workspace = "lab/workspace"
        await pilot.press("slash", *"drift", "enter")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_a_host_that_stops_answering_turns_its_rows_unreachable(lab_world) -> None:
    from unidesk_lab import lab as labapi

    async with console(lab_world) as (app, pilot):
        before = states(app)
        assert before["d518-worker"] == "drift" and before["backend-core"] == "drift"
        grid(app).select("d518-worker")
        labapi.stop_daemon(lab_world.lab_dir, "D518", "sshd")
        try:
            await pilot.press("r")
            await settle(pilot, app)
            after = states(app)
            assert after["d518-worker"] == "unreachable"
            assert after["backend-core"] == "drift"  # the other hosts still answer
            assert grid(app).selected_id == "d518-worker"
            assert "unreachable: D518" in str(app.main_screen.query_one(StatusHeader).render())
        finally:
            labapi.start_daemon(lab_world.lab_dir, "D518", "sshd")
        await pilot.press("r")
        await settle(pilot, app)
        assert states(app)["d518-worker"] == "drift"


HANG = 600.0  # longer than any refresh here: a hang guard, not a timing


def patient_read_live(catalog, desired):
    """The console's live reader (`unidesk_tui.live`) with a connect bound longer than the test: a
    frozen host waits until the test thaws it, however long the other hosts take on a loaded machine."""
    from unidesk_tui.live import read_live_async
    from unidesk_tui.targets import TargetPool

    async def read():
        async with TargetPool(catalog, connect_timeout=HANG) as pool:
            return await read_live_async(catalog, desired, pool=pool, timeout=HANG)

    return asyncio.run(read())


async def test_a_hung_host_holds_only_its_rows_while_the_others_refresh(lab_world) -> None:
    """D518's sshd is frozen (SIGSTOP: TCP still connects, SSH never answers). The other hosts' rows
    turn fresh while D518's still wait (⟳); thawed, D518's rows answer too. Then, frozen again under
    the default reader, D518's rows turn unreachable at the connect bound.

    An ordering, not a stopwatch: D518 stays frozen until main-server's rows are fresh (the first
    reader's connect bound outlasts the test), so a loaded machine cannot reorder it. How fast the
    other rows turn fresh is bench/console.py's figure."""
    import signal

    from unidesk_lab import daemon
    from unidesk_lab import lab as labapi
    from unidesk_tui.live import read_live

    pid = daemon.running_pid(labapi._loaded(lab_world.lab_dir), "D518", "sshd")
    assert pid is not None
    async with console(lab_world, read_live=patient_read_live) as (app, pilot):
        main = app.main_screen
        os.kill(pid, signal.SIGSTOP)
        try:
            await pilot.press("r")
            deadline = time.monotonic() + HANG
            # D518 cannot answer while frozen: its rows wait for as long as main-server's take
            while "D518" not in main._waiting or "main-server" in main._waiting:
                assert time.monotonic() < deadline, "main-server's rows never turned fresh"
                await pilot.pause(0.01)
            assert "d518-worker" in grid(app).waiting
            assert "backend-core" not in grid(app).waiting and states(app)["backend-core"] == "drift"
        finally:
            os.kill(pid, signal.SIGCONT)
        await settle(pilot, app)
        assert not main._waiting and states(app)["d518-worker"] == "drift"

        app.read_live = read_live  # the console's default: a 5 s connect bound
        os.kill(pid, signal.SIGSTOP)
        try:
            await pilot.press("r")
            await settle(pilot, app)
            assert states(app)["d518-worker"] == "unreachable" and states(app)["backend-core"] == "drift"
        finally:
            os.kill(pid, signal.SIGCONT)


async def test_a_stopped_dockerd_is_not_an_unreachable_host(lab_world) -> None:
    """SSH to D518 works, its dockerd is stopped: its rows say the runtime does not answer."""
    from unidesk_lab import lab as labapi

    async with console(lab_world) as (app, pilot):
        labapi.stop_daemon(lab_world.lab_dir, "D518", "dockerd")
        try:
            await pilot.press("r")
            await settle(pilot, app)
            assert states(app)["d518-worker"] == "runtime-unreachable"
            assert "answers SSH" in (app.main_screen.item("d518-worker").live.message or "")
            assert states(app)["backend-core"] == "drift"
        finally:
            labapi.start_daemon(lab_world.lab_dir, "D518", "dockerd")


def test_the_manifest_diff_of_a_k3s_service_reads_the_live_objects(lab_world) -> None:
    """The render of decision-center at the desired commit against what the lab's k3s API holds:
    absent objects are marked to be created; a present Deployment differs in its commit stamp."""
    from unidesk_tui.live import read_live
    from unidesk_tui.manifest_diff import manifest_diff
    from unidesk_tui.planning import run_plan

    ws = lab_world.ws()
    doc = run_plan(ws, "check", read_live=read_live).document  # fills the local mirror
    item = next(i for i in doc.services if i.id == "decision-center")
    desired = item.commit
    diff = manifest_diff(ws, "decision-center", None)
    assert diff.note is None, diff.note
    kinds = {(o.kind, o.name) for o in diff.objects}
    assert ("Deployment", "decision-center") in kinds
    deployment = next(o for o in diff.objects if o.kind == "Deployment")
    if item.live.state == "missing":  # the live read agrees with the check: nothing to compare with
        assert deployment.live_missing and any("+kind: Deployment" == line for line in deployment.diff)
        return
    assert not deployment.live_missing
    assert any(line.startswith("+") and desired in line for line in deployment.diff), (
        deployment.diff
    )  # the stamp moves to it


async def test_dry_run_apply_through_the_console_streams_a_real_job(lab_world) -> None:
    async with console(lab_world) as (app, pilot):
        grid(app).select("backend-core")
        await pilot.press("space", "a", "d")  # dry-run is chosen in the dialog
        assert isinstance(app.screen, ConfirmApplyScreen) and app.screen.request.dry_run
        await bound(pilot, app, 1200)
        screen = await confirmed_job(pilot, app, 1200)  # a dry run only reads: compose labels, proxy probe
        job = jobs.load_job(lab_world.state_dir, screen.job_id)
        assert job.dryRun and job.status in JOB_TERMINAL
        assert screen.lines_written > 0
        await pilot.press("escape")
        assert app.screen is app.main_screen
        assert states(app)["backend-core"] == "drift"  # nothing changed


@pytest.mark.slow
async def test_apply_through_the_console_brings_the_service_in_sync(lab_world) -> None:
    async with console(lab_world) as (app, pilot):
        grid(app).select("backend-core")
        await pilot.press("space", "a")
        await bound(pilot, app, 1200)
        screen = await confirmed_job(pilot, app)
        assert screen.job.status == "succeeded", screen.job.result
        await pilot.press("escape", "r")
        await settle(pilot, app)
        assert states(app)["backend-core"] == "in-sync"
        assert "succeeded" in grid(app).get_cell("backend-core", "job").plain


@pytest.mark.slow
async def test_dev_view_shows_running_commits_and_a_confirmed_dev_apply_turns_the_row_in_sync(lab_world) -> None:
    """`2` reads the dev environment's runtime (issue 10): after a dev apply staged with space, `a`,
    `y`, the row is in-sync and RUNNING shows the commit the dev Deployments run."""
    async with console(lab_world) as (app, pilot):
        await pilot.press("2")
        await settle(pilot, app)
        doc = app.main_screen.document
        assert doc.source.kind == "env" and doc.source.environment == "dev"
        item = next(i for i in doc.services if i.id == "frontend")
        assert item.applyEnabled is True and item.live is not None and item.live.state == "missing"  # read, not planned
        grid(app).select("frontend")
        await pilot.press("space", "a")
        assert isinstance(app.screen, ConfirmApplyScreen)
        await bound(pilot, app, 1200)
        screen = await confirmed_job(pilot, app)
        assert screen.job.status == "succeeded", screen.job.result
        assert screen.job.environment == "dev"
        await pilot.press("escape", "r")
        await settle(pilot, app)
        assert states(app)["frontend"] == "in-sync"
        item = next(i for i in app.main_screen.document.services if i.id == "frontend")
        assert item.live.commit == item.commit and item.action == "noop"
        assert item.commit[:7] in grid(app).get_cell("frontend", "running").plain
