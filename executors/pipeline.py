"""The apply pipelines, in order, as the job engine runs them: one list of Steps per executor kind.

Target-side always: compose resolution (read-only), proxy probe (read-only), source fetch and
`git archive` on the target, BuildKit build, rollout, live verification. k3s targets also preload
and check the pod sandbox (pause) image before importing or applying anything.
"""

from __future__ import annotations

import logging

from executors.base import Step
from executors.build import build_step
from executors.proxy import probe_step
from executors.source import source_step
from unidesk_tui.errors import UnideskError
from unidesk_tui.plan import DesiredService, isolation_problems

log = logging.getLogger(__name__)


def refuse_unisolated(service: DesiredService | None) -> None:
    """An environment run that could touch production is refused before anything runs
    (`environment_isolation`): apply lists the steps, so it refuses before starting a job."""
    problems = isolation_problems(service) if service is not None else []
    if problems:
        raise UnideskError(*problems)


def compose_steps(service: DesiredService) -> list[Step]:
    from executors.compose import resolve_step, rollout_step, verify_step

    refuse_unisolated(service)
    return [
        Step("resolve-compose", resolve_step, read_only=True),
        Step("proxy-probe", probe_step, read_only=True),
        Step("source", source_step),
        Step("build", build_step, limit="build"),
        Step("rollout", rollout_step, limit="rollout"),
        Step("verify", verify_step, limit="verify"),
    ]


def k3s_steps(service: DesiredService) -> list[Step]:
    from executors import k3s_apply
    from executors.pause_image import pause_image_step
    from executors.validate import validate_step

    refuse_unisolated(service)
    environment_run = service is not None and service.environment is not None
    return [
        Step("k3s-preflight", k3s_apply.preflight_step, read_only=True),
        Step("k3s-containerized", k3s_apply.stop_containerized_step),
        Step("proxy-probe", probe_step, read_only=True),
        # the sandbox image first: nothing is imported or applied on a node without a real /pause
        Step("k3s-pause-image", pause_image_step),
        Step("source", source_step),
        Step("k8s-manifest", k3s_apply.manifest_step),
        # environment runs: dev-env rules, client dry-run, fixed images, before anything is built or applied
        *([Step("validate", validate_step, read_only=True)] if environment_run else []),
        Step("build", build_step, limit="build"),
        Step("k3s-import", k3s_apply.import_step, limit="rollout"),
        Step("k8s-apply", k3s_apply.apply_step, limit="rollout"),
        Step("k8s-rollout", k3s_apply.rollout_step, limit="rollout"),
        # a legacy direct-Docker twin is production's: never removed by an environment run
        *([] if environment_run else [Step("legacy-twin", k3s_apply.legacy_twin_step)]),
        Step("verify", k3s_apply.verify_step, limit="verify"),
    ]
