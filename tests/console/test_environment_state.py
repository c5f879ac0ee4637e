"""File mode is `Environment.FILE` in the console's state, never None (issue 9): the screen, the
header, the plan pane, the documents and the staging it keeps per environment, and the plan cache
it paints from, through the keys that switch environments."""

from __future__ import annotations

from tests.console.conftest import ConsoleWorld
from tests.console.helpers import console, settle
from unidesk_tui import plan_cache
from unidesk_tui.model import Environment
from unidesk_tui.widgets.plan_pane import PlanPane
from unidesk_tui.widgets.status_header import StatusHeader


def state_of(app) -> set[object]:
    main = app.main_screen
    return {
        main.environment,
        main.query_one(StatusHeader).environment,
        main.query_one(PlanPane).environment,
    }


async def test_every_piece_of_console_state_names_the_environment(world: ConsoleWorld) -> None:
    async with console(world) as (app, pilot):
        main = app.main_screen
        assert state_of(app) == {Environment.FILE} and all(type(e) is Environment for e in state_of(app))
        assert set(main.documents) == {Environment.FILE}
        for key, env in (
            ("2", Environment.DEV),
            ("3", Environment.PROD),
            ("e", Environment.FILE),
            ("e", Environment.DEV),
        ):
            await pilot.press(key)
            await settle(pilot, app)
            assert state_of(app) == {env} and all(type(e) is Environment for e in state_of(app)), key
        assert None not in main.documents and None not in main.staged
        assert all(type(e) is Environment for e in [*main.documents, *main.staged])
    # what the console cached for file mode is what it opens on next time
    cached = plan_cache.load(world.state_dir, world.workspace, Environment.FILE)
    assert cached is not None and cached.document.source.kind == "file"
    assert plan_cache.cache_path(world.state_dir, world.workspace, Environment.FILE).name.endswith("-file.json")
