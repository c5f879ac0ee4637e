"""The apply pipelines, in order, as the job engine runs them: one list of Steps per executor kind.

Target-side always: compose resolution (read-only), proxy probe (read-only), source fetch and
`git archive` on the target, BuildKit build, rollout, live verification.
"""

from __future__ import annotations

import logging

from executors.base import Step
from executors.build import build_step
from executors.proxy import probe_step
from executors.source import source_step
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.plan import DesiredService

log = logging.getLogger(__name__)


def compose_steps(service: DesiredService) -> list[Step]:
    from executors.compose import resolve_step, rollout_step, verify_step

    return [
        Step("resolve-compose", resolve_step, read_only=True),
        Step("proxy-probe", probe_step, read_only=True),
        Step("source", source_step),
        Step("build", build_step),
        Step("rollout", rollout_step),
        Step("verify", verify_step),
    ]


async def _k3s_not_available(ctx) -> None:
    ctx.emit("k3sctl-managed apply is not available in this build", "stderr")
    raise UnideskError.of(ErrorCode.ROLLOUT_FAILED, f"{ctx.service.id}: k3sctl-managed apply is not implemented yet; check and plan are", service=ctx.service.id)


def k3s_steps(service: DesiredService) -> list[Step]:
    return [Step("proxy-probe", probe_step, read_only=True), Step("k3s-apply", _k3s_not_available)]
