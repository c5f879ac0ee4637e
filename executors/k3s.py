"""The `k3sctl-managed` executor: services that run as Deployments in the node's native k3s.

Probe: for each of the service's Deployments (through the node's API server, reached over the
SSH tunnel with the node's own kubeconfig): the `UNIDESK_DEPLOY_*` annotations and container env,
the image and the rollout status; plus health through the microservice proxy.
Apply: preflight, proxy probe, the pod sandbox (pause) image, target-side source and build, import
into containerd, apply the narrowed manifest, wait for the rollout, verify (executors/k3s_apply.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from executors import k3s_apply, k3s_restore
from executors.base import Executor, Step
from executors.build import build_step
from executors.containerd import image_id as containerd_image_id
from executors.deployments import deployment_facts, deployment_layers, read_deployments
from executors.docker_probe import image_present
from executors.health import health_expected, read_health
from executors.k8s_manifest import render
from executors.observe import Evidence, health_layer, missing, observed, with_identity
from executors.pause_image import pause_image_step
from executors.provenance import judge, read_record
from executors.proxy import probe_step
from executors.reuse import reuse_step
from executors.source import source_step
from executors.stamp import deploy_env
from executors.validate import validate_step
from unidesk_tui.catalog import Catalog
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.isolation import refuse_unisolated, touches_production_twin
from unidesk_tui.model import DesiredService, Observation, State


def rollout_moving(rollout: dict[str, Any]) -> bool:
    """Not every replica runs the current template yet (as opposed to: all do, none is available)."""
    return rollout["observedGeneration"] < rollout["generation"] or rollout["updated"] < rollout["replicas"]


def rollout_text(rollout: dict[str, Any]) -> str:
    what = (
        "rollout under way"
        if rollout_moving(rollout)
        else "rolled out, no replica available"
        if rollout["available"] == 0
        else "rollout finishing"
    )
    return f"{what} ({rollout['updated']}/{rollout['replicas']} updated, {rollout['available']} available)"


class K3sExecutor(Executor):
    """`k3sctl-managed`: Deployments in the node's native k3s, built and imported on the node."""

    async def probe(self, session: Any, catalog: Catalog, service: DesiredService) -> Observation:
        k8s = service.k8s
        if k8s is None:
            raise UnideskError.of(
                ErrorCode.CONFIG_INVALID, f"{service.id}: k3sctl-managed without k8s objects", service=service.id
            )
        docker = await session.docker()
        deployments, present, reading = await asyncio.gather(
            read_deployments(session, k8s.namespace, k8s.deployments),
            image_present(docker, service.id, service.commit),
            read_health(catalog.health_url(service.id, service.environment)),
        )
        found: dict[str, Any] = {}
        evidence: dict[str, Any] = {"namespace": k8s.namespace, "deployments": found}
        layers: list[Evidence] = []
        absent, stalled = [], []
        for name, dep in deployments.items():
            if dep is None:
                absent.append(name)
                found[name] = None
                continue
            facts = deployment_facts(dep)
            found[name] = facts
            layers += deployment_layers(name, facts)
            if facts["rollout"]["available"] == 0:
                stalled.append(name)
        if absent:
            return missing(
                "; ".join(f"Deployment {k8s.namespace}/{n} not found" for n in absent), reading, evidence, present
            )
        layers.append(health_layer(reading, health_expected(catalog, service)))
        obs = observed(layers, service.commit, reading, evidence, present)
        claimed = obs.live.commit
        images = [i for d in found.values() for i in d["images"] if i]
        if claimed is not None and images and session.target.k3s is not None:
            # identity: the image containerd holds under the name the Deployment runs, against the build record
            record, running = await asyncio.gather(
                read_record(session, session.target.workDir, service.id, service.environment, claimed),
                containerd_image_id(session, session.target.k3s, images[0]),
            )
            obs = with_identity(obs, judge(record, running, claimed))
        if stalled:
            # It exists, so it is not missing: either its rollout has not produced a replica yet, or
            # every replica runs the current template and none is available.
            moving = [n for n in stalled if rollout_moving(found[n]["rollout"])]
            state = State.PROGRESSING if moving else State.DEGRADED
            message = "; ".join(
                f"Deployment {k8s.namespace}/{n}: " + rollout_text(found[n]["rollout"]) for n in stalled
            )
            return Observation(obs.live.model_copy(update={"state": state, "message": message}), obs.imagePresent)
        incomplete = [n for n, d in found.items() if not d["rollout"]["complete"]]
        if incomplete and obs.live.state == State.IN_SYNC:
            # A rollout still in progress does not prove that every replica runs the commit.
            message = "; ".join(
                f"Deployment {k8s.namespace}/{n}: " + rollout_text(found[n]["rollout"]) for n in incomplete
            )
            return Observation(
                obs.live.model_copy(update={"state": State.PROGRESSING, "message": message}), obs.imagePresent
            )
        return obs

    def manifest_objects(self, text: str, service: DesiredService) -> list[dict[str, Any]]:
        """The service's objects of manifest `text` as a deploy applies them (narrowed, filled in, stamped)."""
        if service.k8s is None or not service.commit:
            raise UnideskError.of(
                ErrorCode.CONFIG_INVALID, f"{service.id}: no k8s objects or no resolved commit", service=service.id
            )
        env = deploy_env(service.id, service.repo, service.commit, service.requestedCommit)
        return render(text, service.k8s, service.id, service.image or "", env)

    def steps(self, service: DesiredService) -> list[Step]:
        refuse_unisolated(service)
        return [
            Step("k3s-preflight", k3s_apply.preflight_step, read_only=True),
            # what runs now, before anything changes: a failed apply, rollout or verification restores it
            Step("k3s-restore-point", k3s_restore.record_step),
            Step("k3s-containerized", k3s_apply.stop_containerized_step),
            Step("proxy-probe", probe_step, read_only=True),
            # the sandbox image first: nothing is imported or applied on a node without a real /pause
            Step("k3s-pause-image", pause_image_step),
            Step("source", source_step),
            Step("k8s-manifest", k3s_apply.manifest_step),
            # environment runs: dev-env rules, client dry-run, fixed images, before anything is built or applied
            *([Step("validate", validate_step, read_only=True)] if service.environment.named else []),
            Step("reuse", reuse_step(("build",))),  # the manifest still comes from the source
            Step("build", build_step, limit="build"),
            Step("k3s-import", k3s_apply.import_step, limit="rollout"),
            Step("k8s-apply", k3s_apply.apply_step, limit="rollout", restores=True),
            Step("k8s-rollout", k3s_apply.rollout_step, limit="rollout", restores=True),
            # a legacy direct-Docker twin is production's: never removed by an environment run
            *([Step("legacy-twin", k3s_apply.legacy_twin_step)] if touches_production_twin(service) else []),
            Step("verify", k3s_apply.verify_step, limit="verify", restores=True),
        ]

    def restore_steps(self, service: DesiredService) -> list[Step]:
        return [
            Step("restore", k3s_restore.restore_step, limit="rollout"),
            Step("restore-rollout", k3s_apply.rollout_step, limit="rollout"),
            Step("restore-verify", k3s_apply.verify_step, limit="verify"),
        ]
