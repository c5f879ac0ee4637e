"""TargetSession.run over a real SSH connection that is lost mid-command (issue 13): the loss is
`target_unreachable`, never an exception escaping as `internal_error`."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import asyncssh
import pytest

from tests.conftest import catalog_doc
from unidesk_tui.catalog import parse_catalog
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.targets import TargetSession


class _NoAuth(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False


async def _drop_after_a_line(process: asyncssh.SSHServerProcess) -> None:
    process.stdout.write("first line\n")
    await asyncio.sleep(0.2)
    process.channel.get_connection().abort()  # the host vanished: no exit status, no close


@asynccontextmanager
async def lost_session():
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[key], server_factory=_NoAuth, process_factory=_drop_after_a_line
    )
    port = server.sockets[0].getsockname()[1]
    conn = await asyncssh.connect("127.0.0.1", port, username="x", known_hosts=None, client_keys=None)
    target = parse_catalog(json.dumps(catalog_doc("file:///x.git"))).target("main-server")
    try:
        yield TargetSession(target, conn)
    finally:
        conn.close()
        server.close()


async def test_a_connection_lost_mid_command_is_target_unreachable():
    lines: list[str] = []
    with pytest.raises(UnideskError) as err:
        async with lost_session() as session:
            await session.run(["sh", "-c", "echo; sleep 5"], on_line=lambda line, stream: lines.append(line))
    assert err.value.problems[0].code == ErrorCode.TARGET_UNREACHABLE
    assert "main-server" in err.value.problems[0].message and lines == ["first line"]


async def test_a_command_on_a_lost_connection_is_target_unreachable():
    with pytest.raises(UnideskError) as err:
        async with lost_session() as session:
            session.conn.abort()
            await asyncio.sleep(0.05)
            await session.run(["true"])
    assert err.value.problems[0].code == ErrorCode.TARGET_UNREACHABLE


# -- a target that stops answering (a frozen sshd): the server runs on its own thread's event loop,
# which the test blocks; the TCP connection stays up, nothing answers on it.


async def _run_forever(process: asyncssh.SSHServerProcess) -> None:
    process.stdout.write("started\n")
    await asyncio.sleep(3600)


class FrozenServer:
    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.thawed = threading.Event()

        async def listen():
            key = asyncssh.generate_private_key("ssh-ed25519")
            return await asyncssh.listen(
                "127.0.0.1", 0, server_host_keys=[key], server_factory=_NoAuth, process_factory=_run_forever
            )

        self.server = asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self.loop.call_soon_threadsafe(self.thawed.wait, 60)  # blocks the server's loop until thaw()

    def thaw(self) -> None:
        self.thawed.set()

        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@asynccontextmanager
async def frozen_session():
    server = FrozenServer()
    conn = await asyncssh.connect("127.0.0.1", server.port, username="x", known_hosts=None, client_keys=None)
    target = parse_catalog(json.dumps(catalog_doc("file:///x.git"))).target("main-server")
    try:
        yield TargetSession(target, conn), server
    finally:
        server.thaw()
        conn.abort()


async def test_a_command_on_a_frozen_target_is_target_unreachable_within_its_timeout():
    async with frozen_session() as (session, server):
        server.freeze()
        with pytest.raises(UnideskError) as err:  # the outer bound only turns a hang into a failure
            await asyncio.wait_for(session.run(["true"], timeout=1), 30)
    assert err.value.problems[0].code == ErrorCode.TARGET_UNREACHABLE
    assert "no channel opened within 1 s" in err.value.problems[0].message


async def test_a_step_overrunning_on_a_frozen_target_is_stopped_and_the_target_named_silent():
    """The engine's step limit holds although the step's cleanup blocks on the frozen target."""
    from unidesk_tui import engine

    class Ctx:  # the two things run_within asks of a StepContext
        def __init__(self, session: TargetSession) -> None:
            self._session = session

        def connected(self) -> bool:
            return True

        async def session(self) -> TargetSession:
            return self._session

    async def build(ctx) -> None:
        session = await ctx.session()
        try:
            await session.run(["docker", "build", "."], timeout=None, on_line=lambda line, stream: server.freeze())
        finally:
            await session.run(["rm", "-rf", "context"], timeout=120)  # blocks: nothing answers

    async with frozen_session() as (session, server):
        step = engine.Step("build", build, limit="build")
        overrun = await asyncio.wait_for(engine.run_within(step, Ctx(session), 1), 30)
    assert overrun == engine.Overrun.TARGET_SILENT


async def test_a_step_overrunning_on_a_live_target_is_stopped():
    from unidesk_tui import engine

    class Ctx:
        def connected(self) -> bool:
            return False  # no SSH session was used: nothing to ask

    async def slow(ctx) -> None:
        await asyncio.sleep(3600)

    overrun = await asyncio.wait_for(engine.run_within(engine.Step("build", slow, limit="build"), Ctx(), 0.2), 30)
    assert overrun == engine.Overrun.STOPPED
