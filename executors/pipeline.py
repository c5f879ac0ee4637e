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


def k3s_steps(service: DesiredService) -> list[Step]:
    from executors import k3s_apply
    from executors.pause_image import pause_image_step

    return [
        Step("k3s-preflight", k3s_apply.preflight_step, read_only=True),
        Step("proxy-probe", probe_step, read_only=True),
        # the sandbox image first: nothing is imported or applied on a node without a real /pause
        Step("k3s-pause-image", pause_image_step),
        Step("source", source_step),
        Step("k8s-manifest", k3s_apply.manifest_step),
        Step("build", build_step),
        Step("k3s-import", k3s_apply.import_step),
        Step("k8s-apply", k3s_apply.apply_step),
        Step("k8s-rollout", k3s_apply.rollout_step),
        Step("legacy-twin", k3s_apply.legacy_twin_step),
        Step("verify", k3s_apply.verify_step),
    ]
