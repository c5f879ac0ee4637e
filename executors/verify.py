"""Live verification: the job succeeds only when the runtime proves the requested commit.

Docker services: the running container's image labels, its UNIDESK_DEPLOY_* env and health through
the microservice proxy (always healthy; showing the commit where the service exposes
`deploy.commit`). A healthy old version fails with `verification_failed`. `poll` is the one
verification loop every executor uses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from executors.base import Verification
from executors.docker_probe import ComposeRef, container_facts
from executors.health import health_problems, read_health
from executors.stamp import ENV_COMMIT, ENV_REPO, ENV_REQUESTED, ENV_SERVICE, LABEL_COMMIT, LABEL_REPO, LABEL_SERVICE
from unidesk_tui.errors import ErrorCode, UnideskError

log = logging.getLogger(__name__)

VERIFY_TIMEOUT = 60.0
VERIFY_INTERVAL = 1.0


def check_docker(service, facts, reading, health_expected: bool) -> Verification:
    """Compare every layer with the requested deploy (pure)."""
    want = service.commit
    layers: dict[str, str | None] = {}
    problems: list[str] = []
    if facts is None or not facts.running:
        return Verification(False, {}, "no running container" if facts is None else f"container {facts.name} is {facts.status}")
    labels, env = facts.image_labels, facts.env
    layers["image label"] = labels.get(LABEL_COMMIT)
    layers["env"] = env.get(ENV_COMMIT)
    expected_pairs = [
        ("image label unidesk.ai/source-commit", labels.get(LABEL_COMMIT), want),
        ("image label unidesk.ai/service-id", labels.get(LABEL_SERVICE), service.id),
        ("image label unidesk.ai/source-repo", labels.get(LABEL_REPO), service.repo),
        ("env UNIDESK_DEPLOY_COMMIT", env.get(ENV_COMMIT), want),
        ("env UNIDESK_DEPLOY_SERVICE_ID", env.get(ENV_SERVICE), service.id),
        ("env UNIDESK_DEPLOY_REPO", env.get(ENV_REPO), service.repo),
        ("env UNIDESK_DEPLOY_REQUESTED_COMMIT", env.get(ENV_REQUESTED), service.requestedCommit),
    ]
    for name, got, expected in expected_pairs:
        if got != expected:
            problems.append(f"{name} is {got or 'absent'}, expected {expected}")
    if health_expected:
        layers["health"] = reading.commit
    problems += health_problems(reading, want, health_expected)
    if problems:
        return Verification(False, layers, "; ".join(problems))
    return Verification(True, layers, f"running {want} on {', '.join(layers)}")


def settled(result: Verification) -> bool:
    """A failure no amount of waiting fixes: the running container's image labels or env are wrong."""
    return not result.ok and any(part.startswith(("image label", "env ")) for part in result.message.split("; "))


async def poll(ctx, read: Callable[[], Awaitable[tuple[bool, bool, str]]], *, timeout: float = VERIFY_TIMEOUT) -> str:
    """Call `read` -> (ok, settled, message) until ok; raise verification_failed when it is settled
    (waiting cannot help) or `timeout` passes. Returns the proving message."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        ok, is_settled, message = await read()
        if ok:
            ctx.emit(f"verified: {message}")
            return message
        if is_settled or time.monotonic() >= deadline:
            ctx.emit(f"verification_failed: {message}", "stderr")
            raise UnideskError.of(ErrorCode.VERIFICATION_FAILED, f"{ctx.service.id}: live runtime does not prove {ctx.service.commit}: {message}", service=ctx.service.id)
        if message != last:
            ctx.emit(f"verification pending: {message}")
            last = message
        await asyncio.sleep(VERIFY_INTERVAL)


async def verify_docker(ctx, ref: ComposeRef, health_url: str | None, health_expected: bool, *, timeout: float = VERIFY_TIMEOUT) -> None:
    """Poll until every layer proves the commit or `timeout` passes; raise verification_failed."""
    session = await ctx.session()
    docker = await session.docker()

    async def read() -> tuple[bool, bool, str]:
        facts, reading = await asyncio.gather(container_facts(docker, ref), read_health(health_url))
        result = check_docker(ctx.service, facts, reading, health_expected)
        # Labels and env are fixed when a container is created: waiting cannot change them.
        fixed = facts is not None and facts.running and settled(result)
        return result.ok, fixed, result.message + (f"; health {reading.health}" if result.ok and reading.url else "")

    await poll(ctx, read, timeout=timeout)
