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
