"""The target pool: one verified SSH connection per host per command, and what rides on it.

A `TargetSession` gives the probes and the job worker three ways onto a target:

- `run(argv, env=…, timeout=…, on_line=…)`: a remote command. `argv` is joined with shlex.join;
  `env` becomes an `env VAR=val …` prefix of that one command, so no variable outlives it and
  nothing is written to a shell profile. The command runs in its own process group on the target,
  and that group is killed when its channel closes: a timeout, a cancelled job or a dead
  controller never leaves a `docker build` running there (see KILL_ON_CLOSE).
- `docker()`: an aiodocker client over an SSH-forwarded Docker socket (targets[].docker.socket).
- `kube()`: a kubernetes-asyncio ApiClient over an SSH-forwarded port to the node's API server,
  configured from the kubeconfig read *from the node* at targets[].k3s.kubeconfig.

Host keys are always verified against one known_hosts file (ssh.knownHosts, else
~/.ssh/known_hosts) and no ssh_config is read, so nothing outside the catalog can turn checking
off; connecting is bounded by `connect_timeout` so one dead host never stalls the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncssh

from unidesk_tui.catalog import Catalog, Target
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.identifiers import is_plain_name

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
DOCKER_CONNECTIONS = 16  # kept-alive connections per daemon; each new one costs an SSH channel open
LineCallback = Callable[[str, str], None]  # (line, "stdout" | "stderr")


@dataclass(frozen=True)
class RunResult:
    """The outcome of one remote command."""

    argv: tuple[str, ...]
    returncode: int | None  # None when it timed out or the channel died
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, limit: int = 800) -> str:
        """The last bytes of stderr (or stdout) for an error message."""
        text = self.stderr.strip() or self.stdout.strip()
        return text[-limit:]


# `sh -c KILL_ON_CLOSE sh CMD…`: CMD runs in its own session (setsid) with stdin from /dev/null;
# a watcher reads the channel's stdin, which we never close while CMD runs, so its EOF means the
# channel (or the whole connection) went away: then it kills CMD's process group, TERM then KILL.
# sshd gives a non-pty session no such guarantee, and a pty would merge stdout with stderr.
KILL_ON_CLOSE = (
    "exec 3<&0\n"
    'setsid "$@" </dev/null 3<&- &\n'
    "p=$!\n"
    '( while read -r _; do :; done; kill -s TERM -- "-$p"; sleep 3; kill -s KILL -- "-$p" ) <&3 >/dev/null 2>&1 &\n'
    "w=$!\n"
    "exec 3<&-\n"
    'wait "$p"; rc=$?\n'
    'kill "$w" 2>/dev/null\n'
    'exit "$rc"'
)


def killable_command_line(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """`command_line` wrapped so that closing the SSH channel kills the command's process group."""
    return shlex.join(["sh", "-c", KILL_ON_CLOSE, "sh", *command_words(argv, env)])


def command_words(argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The remote command's words: `env K=V … argv…` (env names checked)."""
    words = [str(a) for a in argv]
    if not words:
        raise ValueError("empty command")
    if env:
        for key in env:
            if not is_plain_name(key) or "=" in key or "." in key:
                raise ValueError(f"invalid environment variable name {key!r}")
        words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
    return words


def command_line(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The exact remote command: `env K=V … argv…`, every word quoted with shlex.join."""
    return shlex.join(command_words(argv, env))


def unreachable(target: Target, why: str) -> UnideskError:
    return UnideskError.of(
        ErrorCode.TARGET_UNREACHABLE, f"target {target.id} ({target.ssh.host}:{target.ssh.port}) unreachable: {why}"
    )


def known_hosts_path(target: Target) -> str:
    """The one known_hosts file the target's host key is checked against."""
    return target.ssh.knownHosts or os.path.expanduser("~/.ssh/known_hosts")


# Kubeconfig user fields that make the client run a program or read a local file for credentials:
# a node's kubeconfig must not be able to do either on the controller.
KUBECONFIG_REFUSED_USER_FIELDS = ("exec", "auth-provider", "tokenFile")


def check_node_kubeconfig(doc: Any, target_id: str) -> None:
    """Refuse a kubeconfig read from a node whose users carry exec/auth-provider/tokenFile."""
    users = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(users, list | None):
        raise UnideskError.of(ErrorCode.PROBE_FAILED, f"{target_id}: the node's kubeconfig is not a kubeconfig mapping")
    for entry in users or []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(user, dict | None):
            raise UnideskError.of(
                ErrorCode.PROBE_FAILED, f"{target_id}: the node's kubeconfig has a malformed users entry"
            )
        refused = [f for f in KUBECONFIG_REFUSED_USER_FIELDS if f in (user or {})]
        if refused:
            raw_name = entry.get("name")
            name = raw_name if isinstance(raw_name, str) else "?"
            raise UnideskError.of(
                ErrorCode.PROBE_FAILED,
                f"{target_id}: refusing the node's kubeconfig: user {name[:64]!r} uses {', '.join(refused)} (would "
                "run or read on the controller)",
            )


def is_connection_loss(exc: BaseException) -> bool:
    """A lost SSH connection or a tunnel over it (docker, kube APIs): the target is unreachable."""
    if isinstance(exc, (asyncssh.Error, ConnectionError)):
        return True
    aiohttp = sys.modules.get("aiohttp")  # loaded only when a step used the docker or kube API
    return aiohttp is not None and isinstance(exc, aiohttp.ClientConnectionError)


class TargetSession:
    """One open SSH connection to a target, plus the tunnels opened over it."""

    def __init__(self, target: Target, conn: asyncssh.SSHClientConnection) -> None:
        self.target = target
        self.conn = conn
        self._docker: Any = None
        self._kube: Any = None
        self._listeners: list[asyncssh.SSHListener] = []
        self._tmpdirs: list[tempfile.TemporaryDirectory] = []
        self._connectors: list[Any] = []
        self._lock = asyncio.Lock()

    # -- commands ------------------------------------------------------------------------------
    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 120.0,
        on_line: LineCallback | None = None,
        input: str | None = None,
    ) -> RunResult:
        """Run one command on the target; stream its lines to `on_line` as they arrive.

        Without `input` the command is killed on the target when it times out, when the calling
        task is cancelled, or when the connection drops. A command fed `input` gets EOF after it
        and is not wrapped: such commands are short reads (e.g. kubectl reading a manifest).
        """
        killable = input is None
        cmd = killable_command_line(argv, env) if killable else command_line(argv, env)
        out: list[str] = []
        err: list[str] = []
        try:
            # bounded too: a frozen sshd accepts no channel, and only the keepalive would notice
            proc = await asyncio.wait_for(self.conn.create_process(cmd, encoding="utf-8", errors="replace"), timeout)
        except TimeoutError:
            raise unreachable(self.target, f"no channel opened within {timeout:g} s") from None
        except (OSError, asyncssh.Error) as exc:
            raise unreachable(self.target, f"cannot open a channel: {exc}") from None

        async def pump(reader, sink: list[str], stream: str) -> None:
            async for line in reader:
                sink.append(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"), stream)

        async def whole() -> int | None:
            if not killable:
                proc.stdin.write(input or "")
                proc.stdin.write_eof()
            await asyncio.gather(pump(proc.stdout, out, "stdout"), pump(proc.stderr, err, "stderr"))
            result = await proc.wait()
            return result.exit_status

        try:
            rc = await asyncio.wait_for(whole(), timeout)
            timed_out = False
        except TimeoutError:
            proc.close()  # the remote watcher sees EOF and kills the command's process group
            rc, timed_out = None, True
        except asyncio.CancelledError:
            proc.close()
            raise
        except (OSError, asyncssh.Error) as exc:  # the connection was lost mid-command (ConnectionLost & co.)
            proc.close()
            raise unreachable(
                self.target,
                f"connection lost during `{shlex.join(str(a) for a in argv)[:120]}`: {exc or type(exc).__name__}",
            ) from None
        return RunResult(tuple(str(a) for a in argv), rc, "".join(out), "".join(err), timed_out)

    async def read_file(self, path: str, timeout: float = 15.0) -> str:
        res = await self.run(["cat", "--", path], timeout=timeout)
        if not res.ok:
            raise UnideskError.of(ErrorCode.PROBE_FAILED, f"{self.target.id}: cannot read {path}: {res.tail(200)}")
        return res.stdout

    # -- docker --------------------------------------------------------------------------------
    async def docker(self):
        """aiodocker client for the target's daemon, over an SSH-forwarded socket (cached)."""
        async with self._lock:
            if self._docker is None:
                import aiodocker
                import aiohttp

                listener = await self.conn.forward_local_port_to_path("127.0.0.1", 0, self.target.docker.socket)
                self._listeners.append(listener)
                connector = aiohttp.TCPConnector(limit=DOCKER_CONNECTIONS)
                self._connectors.append(connector)
                self._docker = aiodocker.Docker(url=f"tcp://127.0.0.1:{listener.get_port()}", connector=connector)
            return self._docker

    # -- kubernetes ----------------------------------------------------------------------------
    async def kube(self):
        """kubernetes-asyncio ApiClient for the node's API server (cached).

        The kubeconfig is read from the node; its server address (loopback on the node) is
        reached through a local port forwarded over this SSH connection.
        """
        async with self._lock:
            if self._kube is None:
                self._kube = await self._open_kube()
            return self._kube

    async def _open_kube(self):
        import yaml
        from kubernetes_asyncio.client import ApiClient, Configuration
        from kubernetes_asyncio.config.kube_config import load_kube_config_from_dict

        if self.target.k3s is None:
            raise UnideskError.of(ErrorCode.PROBE_FAILED, f"target {self.target.id} has no k3s node configured")
        res = await self.run(["cat", "--", self.target.k3s.kubeconfig], timeout=15)
        if not res.ok:  # the node's own kubeconfig is how native k3s is found: without it there is none
            raise UnideskError.of(
                ErrorCode.K3S_NOT_NATIVE,
                f"no native k3s on {self.target.id}: kubeconfig {self.target.k3s.kubeconfig} cannot be read: "
                f"{res.tail(200)}",
            )
        text = res.stdout
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UnideskError.of(ErrorCode.PROBE_FAILED, f"{self.target.id}: kubeconfig is not YAML: {exc}") from None
        check_node_kubeconfig(doc, self.target.id)
        cfg = type.__call__(Configuration)
        tmp = tempfile.TemporaryDirectory(prefix="unidesk-kube-")
        self._tmpdirs.append(tmp)
        await load_kube_config_from_dict(doc, client_configuration=cfg, temp_file_path=tmp.name)
        server = urlsplit(cfg.host)
        remote_host = server.hostname or "127.0.0.1"
        remote_port = server.port or (443 if server.scheme == "https" else 80)
        listener = await self.conn.forward_local_port("127.0.0.1", 0, remote_host, remote_port)
        self._listeners.append(listener)
        cfg.host = urlunsplit((server.scheme, f"127.0.0.1:{listener.get_port()}", server.path, "", ""))
        if server.scheme == "https" and remote_host not in ("127.0.0.1", "localhost"):
            cfg.tls_server_name = remote_host  # the certificate names the node, not our tunnel
        return ApiClient(configuration=cfg)

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
        for connector in self._connectors:
            await connector.close()
        if self._kube is not None:
            await self._kube.close()
        for listener in self._listeners:
            listener.close()
        self.conn.close()
        try:
            await asyncio.wait_for(self.conn.wait_closed(), 2)
        except (TimeoutError, OSError, asyncssh.Error):
            pass
        for tmp in self._tmpdirs:
            tmp.cleanup()


class TargetPool:
    """Opens at most one SSH connection per target and shares it; `close()` ends them all."""

    def __init__(self, catalog: Catalog, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.catalog = catalog
        self.connect_timeout = connect_timeout
        self._sessions: dict[str, asyncio.Task[TargetSession]] = {}

    def connected(self, target_id: str) -> bool:
        """Whether an SSH session to `target_id` was opened (SSH answered, whatever came after)."""
        task = self._sessions.get(target_id)
        return task is not None and task.done() and not task.cancelled() and task.exception() is None

    async def session(self, target_id: str) -> TargetSession:
        """The open session to `target_id`; raises UnideskError(target_unreachable)."""
        task = self._sessions.get(target_id)
        if task is None:
            task = asyncio.ensure_future(self._connect(self.catalog.target(target_id)))
            self._sessions[target_id] = task
        return await asyncio.shield(task)

    async def _connect(self, target: Target) -> TargetSession:
        ssh = target.ssh
        known_hosts = known_hosts_path(target)
        if not os.path.isfile(known_hosts):
            raise unreachable(
                target, f"known_hosts file {known_hosts} is missing; refusing to connect without verifying the host key"
            )
        options: dict[str, Any] = {
            "port": ssh.port,
            "username": ssh.user,
            # Host keys are always verified against this one file; no ssh_config may override that
            # (a `UserKnownHostsFile none` there would otherwise turn checking off).
            "known_hosts": known_hosts,
            "config": None,
            "connect_timeout": self.connect_timeout,
            "agent_path": None,
            "keepalive_interval": 15,
        }
        if ssh.identityFile:
            options["client_keys"] = [ssh.identityFile]
        try:
            conn = await asyncio.wait_for(asyncssh.connect(ssh.host, **options), self.connect_timeout + 1)
        except TimeoutError:
            raise unreachable(target, f"no answer within {self.connect_timeout:g} s") from None
        except asyncssh.HostKeyNotVerifiable as exc:
            raise unreachable(target, f"host key not verifiable: {exc}") from None
        except (OSError, asyncssh.Error) as exc:
            raise unreachable(target, str(exc) or type(exc).__name__) from None
        log.debug("connected to %s", target.id)
        return TargetSession(target, conn)

    async def close(self) -> None:
        tasks = list(self._sessions.values())
        self._sessions.clear()
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            try:
                session = await task
            except (asyncio.CancelledError, Exception):
                continue
            await session.close()

    async def __aenter__(self) -> TargetPool:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
