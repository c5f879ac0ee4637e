"""Live state: probe every service's runtime on its target, all hosts and services concurrently.

`read_live` is the model.LiveReader the CLI and console use. One SSH connection per target per
call; a target that does not answer within a bounded time makes its services `unreachable` while
every other target's results are still reported.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict

import aiohttp
import asyncssh
from aiodocker.exceptions import DockerError

from executors.registry import executor_for, shared_reads
from unidesk_tui.catalog import Catalog
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.model import DesiredService, LiveState, Observation, State
from unidesk_tui.targets import CONNECT_TIMEOUT, TargetPool

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 20.0  # per target, connecting included
DOCKER_UNREACHABLE = 900  # aiodocker's status for "Cannot connect to Docker Engine"


async def probe_one(pool: TargetPool, catalog: Catalog, service: DesiredService) -> Observation:
    """One service's observation; every failure becomes a state, never an exception."""
    try:
        executor = executor_for(service.mode)
    except UnideskError as exc:
        return Observation(LiveState(state=State.UNSUPPORTED, message=exc.problems[0].message))
    session = None
    try:
        session = await pool.session(service.target)  # type: ignore[arg-type]  # a supported service has a target
        return await executor.probe(session, catalog, service)
    except UnideskError as exc:
        if not any(p.code == ErrorCode.TARGET_UNREACHABLE for p in exc.problems):
            return Observation.failed(State.ERROR, str(exc.problems[0].message))
        if session is not None:  # SSH answered; what failed behind it is the runtime
            return Observation.failed(
                State.RUNTIME_UNREACHABLE,
                f"target {service.target} answers SSH, but not its runtime: {exc.problems[0].message}",
            )
        return Observation.failed(State.UNREACHABLE, str(exc.problems[0].message))
    except DockerError as exc:
        if exc.status == DOCKER_UNREACHABLE and session is not None:  # dockerd stopped: its socket refuses
            return Observation.failed(
                State.RUNTIME_UNREACHABLE,
                f"target {service.target} answers SSH, but its Docker daemon does not: {exc.message}",
            )
        return Observation.failed(State.ERROR, f"probe failed: Docker: {exc.message}")
    except (asyncssh.Error, ConnectionError, aiohttp.ClientError) as exc:
        if session is not None:
            # e.g. dockerd stopped: the forwarded socket refuses, the SSH connection is fine
            return Observation.failed(
                State.RUNTIME_UNREACHABLE,
                f"target {service.target} answers SSH, but not its runtime: {type(exc).__name__}: {exc}",
            )
        return Observation.failed(State.UNREACHABLE, f"target {service.target}: connection lost: {exc}")
    except Exception as exc:  # a probe bug or an unexpected API answer must not sink the others
        log.debug("probe of %s failed", service.id, exc_info=True)
        return Observation.failed(State.ERROR, f"probe failed: {type(exc).__name__}: {exc}")


async def read_live_async(
    catalog: Catalog, desired: list[DesiredService], *, pool: TargetPool | None = None, timeout: float = PROBE_TIMEOUT
) -> dict[str, Observation]:
    """Observations for `desired`, keyed by service id."""
    by_target: dict[str, list[DesiredService]] = defaultdict(list)
    for service in desired:
        by_target[service.target or ""].append(service)
    own_pool = pool is None
    pool = pool or TargetPool(catalog, connect_timeout=min(CONNECT_TIMEOUT, timeout))

    async def target_probes(target: str, services: list[DesiredService]) -> dict[str, Observation]:
        tasks = {s.id: asyncio.ensure_future(probe_one(pool, catalog, s)) for s in services}
        done, pending = await asyncio.wait(tasks.values(), timeout=timeout)
        for task in pending:
            task.cancel()
        out = {}
        for sid, task in tasks.items():
            if task in done:
                out[sid] = task.result()
            elif pool.connected(target):  # SSH answered: the runtime behind it hangs (e.g. a frozen dockerd)
                out[sid] = Observation.failed(
                    State.RUNTIME_UNREACHABLE,
                    f"target {target} answers SSH, but its runtime gave no answer within {timeout:g} s",
                )
            else:
                out[sid] = Observation.failed(State.UNREACHABLE, f"target {target}: no answer within {timeout:g} s")
        return out

    try:
        async with shared_reads(catalog.health_url(s.id, s.environment) for s in desired):
            results = await asyncio.gather(*(target_probes(t, s) for t, s in by_target.items()))
    finally:
        if own_pool:
            await pool.close()
    merged: dict[str, Observation] = {}
    for part in results:
        merged.update(part)
    return merged


def read_live(catalog: Catalog, desired: list[DesiredService]) -> dict[str, Observation]:
    """Synchronous entry point (model.LiveReader); safe to call from inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(read_live_async(catalog, desired))
    box: dict = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(read_live_async(catalog, desired))
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="unidesk-live", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
