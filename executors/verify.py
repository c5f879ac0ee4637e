"""Live verification: the job succeeds only when the runtime proves the requested commit.

Docker services: the running container's image labels, its UNIDESK_DEPLOY_* env and health through
the microservice proxy (always healthy; showing the commit where the service exposes
`deploy.commit`). A healthy old version fails with `verification_failed`. `poll` is the one
verification loop every executor uses; each read is a `Verification`, layer by layer, recorded on
the step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from executors.base import StepContext
from executors.crashes import TAIL_LINES, docker_crash
from executors.docker_probe import ComposeRef, ContainerFacts, container_facts
from executors.health import HealthReading, health_checks, read_health
from executors.stamp import ENV_COMMIT, ENV_REPO, ENV_REQUESTED, ENV_SERVICE, LABEL_COMMIT, LABEL_REPO, LABEL_SERVICE
from executors.steps import fail
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.model import Check, DesiredService, Layer, Verification, check

VERIFY_TIMEOUT = 60.0
VERIFY_INTERVAL = 1.0


def check_docker(
    service: DesiredService,
    facts: ContainerFacts | None,
    reading: HealthReading,
    health_expected: bool,
    built: str | None = None,
) -> Verification:
    """Compare every layer with the requested deploy (pure). `built`: the image ID this job built
    (or reused) for the commit; the container must run exactly it (layer `identity`)."""
    want = service.commit
    if facts is None or not facts.running:
        actual = "no running container" if facts is None else f"container {facts.name} is {facts.status}"
        return Verification((Check(Layer.RUNTIME, "container", "running", actual, False),))
    labels, env = facts.image_labels, facts.env
    checks = [
        check(Layer.IMAGE, LABEL_COMMIT, want, labels.get(LABEL_COMMIT)),
        check(Layer.IMAGE, LABEL_SERVICE, service.id, labels.get(LABEL_SERVICE)),
        check(Layer.IMAGE, LABEL_REPO, service.repo, labels.get(LABEL_REPO)),
        check(Layer.ENV, ENV_COMMIT, want, env.get(ENV_COMMIT)),
        check(Layer.ENV, ENV_SERVICE, service.id, env.get(ENV_SERVICE)),
        check(Layer.ENV, ENV_REPO, service.repo, env.get(ENV_REPO)),
        check(Layer.ENV, ENV_REQUESTED, service.requestedCommit, env.get(ENV_REQUESTED)),
        *([check(Layer.IDENTITY, "image ID", built, facts.image_id)] if built else []),
        *health_checks(reading, want, health_expected),
    ]
    shown = ["image label", "env", *(["identity"] if built else []), *(["health"] if health_expected else [])]
    health = f"; health {reading.health}" if reading.url else ""
    return Verification(tuple(checks), f"running {want} on {', '.join(shown)}{health}")


async def poll(
    ctx: StepContext, read: Callable[[], Awaitable[Verification]], *, timeout: float = VERIFY_TIMEOUT
) -> Verification:
    """Call `read` until its result is ok; raise verification_failed when the failure is settled
    (a layer fixed at creation disagrees: waiting cannot help) or `timeout` passes. Every read is
    recorded on the step (`ctx.verified`); returns the proving one."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        result = await read()
        ctx.verified(result)
        if result.ok:
            ctx.emit(f"verified: {result.message}")
            return result
        if result.settled or time.monotonic() >= deadline:
            ctx.emit(f"verification_failed: {result.message}", "stderr")
            raise UnideskError.of(
                ErrorCode.VERIFICATION_FAILED,
                f"{ctx.service.id}: live runtime does not prove {ctx.service.commit}: {result.message}",
                service=ctx.service.id,
            )
        if result.message != last:
            ctx.emit(f"verification pending: {result.message}")
            last = result.message
        await asyncio.sleep(VERIFY_INTERVAL)


def verify_window(ctx: StepContext) -> float:
    """How long verification waits for the runtime: VERIFY_TIMEOUT, ending a little before the
    service's configured verify limit so the failure is verification_failed, not step_timeout."""
    ms = ctx.service.microservice
    return min(VERIFY_TIMEOUT, max(1.0, ms.timeout("verify") - 2.0)) if ms is not None else VERIFY_TIMEOUT


async def verify_docker(
    ctx: StepContext,
    ref: ComposeRef,
    health_url: str | None,
    health_expected: bool,
    *,
    built: str | None = None,
    timeout: float | None = None,
) -> None:
    """Poll until every layer proves the commit or `timeout` passes; raise verification_failed. A
    container that exits or restarts meanwhile fails at once (rollout_failed), with its exit code
    and last output lines."""
    session = await ctx.session()
    docker = await session.docker()

    async def read() -> Verification:
        facts, reading = await asyncio.gather(container_facts(docker, ref), read_health(health_url))
        crash = docker_crash(facts.name, facts.state, facts.restarts) if facts is not None else None
        if facts is not None and crash is not None:
            logs = await session.run(["docker", "logs", "--tail", str(TAIL_LINES), "--", facts.id], timeout=30)
            crash = crash.with_output(logs.stdout + logs.stderr)
            raise fail(ctx, ErrorCode.ROLLOUT_FAILED, crash.describe())
        return check_docker(ctx.service, facts, reading, health_expected, built)

    await poll(ctx, read, timeout=verify_window(ctx) if timeout is None else timeout)
