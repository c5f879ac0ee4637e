"""The `validate` step of an environment apply: the gate between rendering and touching the runtime.

The narrowed, rendered objects (from the target's materialized commit, `k8s-manifest`) must pass:

- the `dev-env validate` rules (`unidesk_tui.devrules`), judged on the objects without the deploy
  stamps the reconciler added (a stamped repository URL is not a production route);
- `kubectl apply --dry-run=client` on the target with the node's native kubeconfig (objects on
  stdin: nothing is written on the node);
- every fixed image a narrowed Deployment declares (not the placeholder, e.g. the dev provider
  egress proxy) is already in the node's containerd; it is applied as declared, never pulled.

A rule violation or a failed dry-run fails the job here with `dev_manifest_invalid` naming the
object and the rule; a missing fixed image with `image_not_found` naming it. Nothing is built,
imported or applied before this step passes.
"""

from __future__ import annotations

import copy
import posixpath

import yaml

from executors.containerd import containerd_name, listed_names
from executors.k8s_manifest import RESTARTED_AT, containers, fixed_images
from executors.stamp import ENVS
from executors.steps import k3s_node
from unidesk_tui.devrules import check_objects
from unidesk_tui.errors import ErrorCode, Problem, UnideskError

DRY_RUN_TIMEOUT = 120.0


def unstamped(obj: dict) -> dict:
    """The object as the manifest declared it: without the UNIDESK_DEPLOY_* stamps and restart mark."""
    obj = copy.deepcopy(obj)
    template = (obj.get("spec") or {}).get("template") or {}
    for meta in (obj.get("metadata") or {}, template.get("metadata") or {}):
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            for key in (*ENVS, RESTARTED_AT):
                annotations.pop(key, None)
    for c in containers(obj) if obj.get("kind") == "Deployment" else []:
        c["env"] = [e for e in c.get("env") or [] if not (isinstance(e, dict) and e.get("name") in ENVS)]
    return obj


def rule_problems(objects: list[dict], manifest: str, service_id: str) -> list[Problem]:
    """dev-env rule violations of the rendered objects, attributed to the service."""
    _, problems = check_objects([unstamped(o) for o in objects], posixpath.basename(manifest))
    return [Problem(p.code, f"{service_id}: {p.message}", service=service_id, path=p.path) for p in problems]


async def validate_step(ctx) -> None:
    service = ctx.service
    objects: list[dict] = ctx.shared["k8s_objects"]
    names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    problems = rule_problems(objects, service.k8s.manifest, service.id)
    for p in problems:
        ctx.emit(p.message, "stderr")
    if problems:
        raise UnideskError(*problems)
    ctx.emit(f"dev_env_rules=ok manifest={service.k8s.manifest} objects={names}")

    node = k3s_node(ctx)
    session = await ctx.session()
    argv = ["kubectl", "apply", "--dry-run=client", "--validate=false", "-o", "name", "-f", "-"]
    res = await session.run(
        argv, env={"KUBECONFIG": node.kubeconfig}, input=yaml.safe_dump_all(objects), timeout=DRY_RUN_TIMEOUT
    )
    if not res.ok:
        message = (
            f"{service.id}: kubectl apply --dry-run=client on {ctx.target.id} (KUBECONFIG={node.kubeconfig}) "
            f"refused {names}: {res.tail(400)}"
        )
        ctx.emit(message, "stderr")
        raise UnideskError.of(ErrorCode.DEV_MANIFEST_INVALID, message, service=service.id)
    ctx.emit(
        f"kubectl_dry_run=ok target={ctx.target.id} kubeconfig={node.kubeconfig} objects={' '.join(res.stdout.split())}"
    )

    fixed = fixed_images(objects, ctx.shared["image"])
    if fixed:
        present = await listed_names(session, node)
        for where, image in fixed:
            if containerd_name(image) not in present:
                message = (
                    f"{service.id}: {where} declares the fixed image {image}, which is not in {ctx.target.id}'s "
                    f"containerd ({node.containerdSocket}); load it there first (it is never pulled)"
                )
                ctx.emit(message, "stderr")
                raise UnideskError.of(ErrorCode.IMAGE_NOT_FOUND, message, service=service.id, path=where)
            ctx.emit(f"k8s_fixed_image={image} object={where} (in containerd, applied as declared)")
