"""A deployment mode added the way the architecture promises: this one module plus one line in
executors/registry.py's EXECUTORS (tests/test_architecture.py adds that line and runs it).

Its steps act on nothing but the job log; its verification records two layers.
"""

from __future__ import annotations

from typing import Any

from executors.base import Executor, Step, StepContext
from unidesk_tui.catalog import Catalog
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.model import Check, DesiredService, Layer, Observation, Verification

MODE = "fake-mode"


async def prepare(ctx: StepContext) -> None:
    ctx.emit(f"prepared {ctx.service.id} on {ctx.target.id}")


async def verify(ctx: StepContext) -> None:
    result = Verification(
        (
            Check(Layer.IMAGE, "fake label", "fake", "fake", True),
            Check(Layer.HEALTH, "status", "healthy", "healthy", True),
        ),
        "fake service proves itself",
    )
    ctx.verified(result)
    ctx.emit(f"verified: {result.message}")
    if not result.ok:
        raise UnideskError.of(
            ErrorCode.VERIFICATION_FAILED, f"{ctx.service.id}: {result.message}", service=ctx.service.id
        )


class FakeExecutor(Executor):
    task = True  # no catalog microservice behind it
    target_lock = False  # acts on no host

    async def probe(self, session: Any, catalog: Catalog, service: DesiredService) -> Observation:
        raise UnideskError.of(ErrorCode.UNSUPPORTED_SERVICE, f"{service.id}: nothing to probe")

    def steps(self, service: DesiredService) -> list[Step]:
        return [Step("prepare", prepare, read_only=True), Step("verify", verify, limit="verify")]
