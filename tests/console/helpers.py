"""Pilot helpers shared by the console tests: the app on a world, and waiting for what it does.

The waits poll the real app (its refresh worker, its screens, the job files its worker writes);
their bounds are safety nets, not timing assertions.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol

from textual.pilot import Pilot

from tests.console.conftest import FIXED_NOW, SIZE
from unidesk_tui.app import UnideskApp
from unidesk_tui.live import read_live
from unidesk_tui.model import JOB_TERMINAL
from unidesk_tui.screens.confirm_apply import ConfirmApplyScreen
from unidesk_tui.screens.job_log import JobLogScreen
from unidesk_tui.widgets.service_grid import ServiceGrid
from unidesk_tui.workspace import Workspace


class World(Protocol):
    """What the app needs of a test world (conftest's ConsoleWorld, the lab's world)."""

    def ws(self) -> Workspace: ...


def make_app(world: World, **kw: Any) -> UnideskApp:
    """The console on `world`'s workspace: no periodic refresh, the fixed clock, the real live reader."""
    kw.setdefault("refresh_interval", 0)
    kw.setdefault("clock", lambda: FIXED_NOW)
    kw.setdefault("read_live", read_live)
    return UnideskApp(world.ws(), **kw)


async def settle(pilot: Pilot, app: UnideskApp) -> None:
    """Wait until the refresh in flight (if any) has landed on screen."""
    for _ in range(600):
        await pilot.pause(0.05)
        main = app.main_screen
        if main is not None and main._refreshing is None and main.document is not None and app._jobs_seen:
            await pilot.pause()
            return
    raise AssertionError("the console never finished its refresh")


def still_app(world: World) -> UnideskApp:
    """`make_app(world)` with animations off: snapshots are stable."""
    app = make_app(world)
    app.animation_level = "none"
    return app


@asynccontextmanager
async def console(
    world: World, *keys: str, size: tuple[int, int] = SIZE, **kw: Any
) -> AsyncIterator[tuple[UnideskApp, Pilot]]:
    """`make_app(world, **kw)` running under Pilot: `keys` pressed (e.g. "2" for dev), then settled."""
    app = make_app(world, **kw)
    async with app.run_test(size=size) as pilot:
        if keys:
            await pilot.press(*keys)
        await settle(pilot, app)
        yield app, pilot


async def wait_until(pilot: Pilot, pred: Callable[[], object], what: str, tries: int = 400) -> None:
    """Let the app run until `pred()` holds; fail naming `what` if it never does."""
    for _ in range(tries):
        await pilot.pause(0.05)
        if pred():
            return
    raise AssertionError(f"timed out waiting for {what}")


async def bound(pilot: Pilot, app: UnideskApp, tries: int = 400) -> ConfirmApplyScreen:
    """The confirmation dialog, once it has bound the plan it shows (y waits for that)."""
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, ConfirmApplyScreen) and app.screen.request.saved is not None,
        f"the plan to be bound: {getattr(app.screen, 'refusal', None)}",
        tries,
    )
    assert isinstance(app.screen, ConfirmApplyScreen)
    return app.screen


async def confirmed_job(pilot: Pilot, app: UnideskApp, tries: int = 6000) -> JobLogScreen:
    """Press y in a bound confirmation; the job view it opens, once that job has ended."""
    await pilot.press("y")
    await wait_until(pilot, lambda: isinstance(app.screen, JobLogScreen), "the job view", 600)
    screen = app.screen
    assert isinstance(screen, JobLogScreen)
    await wait_until(
        pilot, lambda: screen.job is not None and screen.job.status in JOB_TERMINAL, "the job's end", tries
    )
    return screen


def grid(app: UnideskApp) -> ServiceGrid:
    return app.main_screen.query_one(ServiceGrid)


def row_ids(app: UnideskApp) -> list[str]:
    return grid(app).row_keys


def states(app: UnideskApp) -> dict[str, str | None]:
    """Each service's live state in the document on screen."""
    return {i.id: i.live.state if i.live else None for i in app.main_screen.document.services}


@contextmanager
def silent_main_server(world: Any) -> Iterator[None]:
    """main-server's ssh port (1 in conftest's catalog) moved to a socket that accepts TCP and never speaks."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        config = (world.workspace / "config.json").read_text()
        assert '"port": 1,' in config
        (world.workspace / "config.json").write_text(
            config.replace('"port": 1,', f'"port": {silent.getsockname()[1]},')
        )
        yield
    finally:
        silent.close()
