"""Automatic restore of a k3s service: what ran before the job, put back after a failed rollout.

At the start of the job (`k3s-restore-point`) the service's Deployments are read: when each one is
rolled out and stamped with one commit, that commit, its stamps and the image ID containerd holds
under the name the Deployments run become the job's RestorePoint, and containerd keeps that image
under a restore name of its own (`<repo>:unidesk-restore-<scope>-<service>`), so the job's import
(which re-points the run name) cannot drop it. The apply step records each object's version before
it replaces it (K8S_BEFORE). After a failed apply, rollout or verification the engine runs
`restore` (the run name pointed back at the kept image, re-imported from Docker if containerd lost
it; the changed objects re-applied as they were, only in the service's namespace), then waits for
the rollout and verifies the previous commit as any deploy is verified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from executors.base import RESTORE_POINT, RestorePoint, StepContext
from executors.containerd import containerd_name, ctr_argv, import_image, service_tar_prefix
from executors.containerd import image_id as containerd_image_id
from executors.deployments import deployment_facts, read_deployments
from executors.provenance import scope_of
from executors.stamp import ENV_COMMIT, ENV_REPO, ENV_REQUESTED, commit_of
from executors.steps import fail, k3s_node, replace_latest
from unidesk_tui.errors import ErrorCode
from unidesk_tui.identifiers import same_image
from unidesk_tui.model import DesiredService

K3S_RESTORE = "k3s_restore"  # ctx.shared: the K3sRestore of the job
K8S_BEFORE = "k8s_before"  # ctx.shared: (kind, name) -> the object before apply changed it (None: created)
# Metadata the API server owns: a re-applied object carries only what describes it.
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")


@dataclass(frozen=True)
class K3sRestore:
    run_name: str  # the containerd name the recorded Deployments run
    keep_name: str  # the containerd name that keeps the recorded image for the restore


def keep_name(image: str, service: DesiredService) -> str:
    """The containerd name under which the restore keeps `image`'s current image: same repository,
    a tag of its own per scope and service (overwritten by the next job's restore point)."""
    name = containerd_name(image).split("@", 1)[0]
    repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", f"unidesk-restore-{scope_of(service.environment)}-{service.id}")[:128]
    return f"{repo}:{tag}"


def previous_version(deployments: dict[str, dict | None], image: str | None) -> tuple[dict[str, str], str] | str:
    """({commit, repo, requested}, the image name they run) when every Deployment exists, is rolled
    out with a replica available and is stamped with one and the same commit; else why not (pure)."""
    commits: set[str] = set()
    stamps: dict[str, str] = {}  # the first Deployment's (annotations over env)
    images: list[str] = []
    for name, dep in deployments.items():
        if dep is None:
            return f"Deployment {name} does not exist"
        facts = deployment_facts(dep)
        rollout = facts["rollout"]
        if not rollout["complete"] or rollout["available"] < 1:
            return f"Deployment {name} is not rolled out ({rollout['available']}/{rollout['replicas']} available)"
        annotated = commit_of(facts["annotations"].get(ENV_COMMIT))
        if annotated is None or commit_of(facts["env"].get(ENV_COMMIT)) not in (None, annotated):
            return f"Deployment {name} is not stamped with one commit (annotation and env)"
        commits.add(annotated)
        stamps = stamps or {**facts["env"], **facts["annotations"]}
        images += [i for i in facts["images"] if isinstance(i, str) and i]
    if not commits:
        return "the service declares no Deployment"
    if len(commits) > 1:
        return "its Deployments run different commits: " + ", ".join(sorted(c[:12] for c in commits))
    commit = commits.pop()
    ran = next((i for i in images if same_image(i, image)), images[0] if images else None)
    if ran is None:
        return "its Deployments name no image"
    return {
        "commit": commit,
        "repo": stamps.get(ENV_REPO, ""),
        "requested": stamps.get(ENV_REQUESTED) or commit,
    }, ran


def reapplicable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as read from the API server, as it can be applied again: no status, no
    server-owned metadata (pure)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_METADATA}
    return {k: v for k, v in obj.items() if k not in ("status", "metadata")} | {"metadata": meta}


async def record_step(ctx: StepContext) -> None:
    """Record what runs now as the job's RestorePoint and keep its image in containerd."""
    service = ctx.service
    k8s = service.k8s
    node = k3s_node(ctx)
    if k8s is None:
        ctx.emit("restore_point=none (no k8s objects)")
        return
    session = await ctx.session()
    deployments = await read_deployments(session, k8s.namespace, k8s.deployments)
    found = previous_version(deployments, service.image)
    if isinstance(found, str):
        ctx.emit(f"restore_point=none ({found}: a failure cannot be restored)")
        return
    stamps, ran = found
    image_id = await containerd_image_id(session, node, ran)
    if image_id is None:
        ctx.emit(f"restore_point=none (containerd holds no image under {ran}: a failure cannot be restored)")
        return
    run_name, keep = containerd_name(ran), keep_name(ran, service)
    tagged = await session.run(ctr_argv(node, "images", "tag", "--force", run_name, keep), timeout=60)
    if not tagged.ok:
        ctx.emit(f"restore_point=none (cannot keep {run_name} as {keep}: {tagged.tail(300)})", "stderr")
        return
    names = ", ".join(f"{k8s.namespace}/{n}" for n in deployments)
    ctx.shared[RESTORE_POINT] = RestorePoint(
        stamps["commit"], stamps["repo"] or service.repo, stamps["requested"], image_id, f"Deployments {names}"
    )
    ctx.shared[K3S_RESTORE] = K3sRestore(run_name, keep)
    ctx.emit(f"restore_point={stamps['commit']} image {image_id} (Deployments {names}, {run_name})")
    ctx.emit(f"restore_image_kept={keep}")


def image_action(running: str | None, kept: str | None, wanted: str) -> Literal["unchanged", "retag", "reimport"]:
    """How the run name gets the recorded image back, from the image IDs containerd holds under the
    run name and the kept name (pure): nothing to do, a re-tag, or a re-import from Docker."""
    if running == wanted:
        return "unchanged"
    return "retag" if kept == wanted else "reimport"


async def _image_back(ctx: StepContext, point: RestorePoint, kept: K3sRestore) -> None:
    """containerd's run name names the recorded image again: re-tagged from the kept name, or
    re-imported from the target's Docker when containerd no longer holds it."""
    node = k3s_node(ctx)
    session = await ctx.session()
    action = image_action(
        await containerd_image_id(session, node, kept.run_name),
        await containerd_image_id(session, node, kept.keep_name),
        point.image_id,
    )
    if action == "unchanged":
        ctx.emit(f"restore_image=unchanged ({kept.run_name} is {point.image_id[:19]})")
        return
    if action == "retag":
        res = await session.run(ctr_argv(node, "images", "tag", "--force", kept.keep_name, kept.run_name), timeout=60)
        if not res.ok:
            raise fail(
                ctx, ErrorCode.ROLLOUT_FAILED, f"cannot tag {kept.keep_name} as {kept.run_name}: {res.tail(300)}"
            )
        ctx.emit(f"restore_image=retagged {kept.keep_name} -> {kept.run_name} ({point.image_id[:19]})")
        return
    # containerd lost it: Docker on the target may still hold the image ID (its commit tag, say)
    tagged = await session.run(["docker", "tag", point.image_id, kept.run_name], timeout=60)
    if not tagged.ok:
        raise fail(
            ctx,
            ErrorCode.ROLLOUT_FAILED,
            f"the previous image {point.image_id[:19]} is neither in containerd ({kept.keep_name}) nor in Docker",
        )
    await import_image(ctx, node, kept.run_name, prefix=service_tar_prefix(ctx, "restore"), prune=True)
    if await containerd_image_id(session, node, kept.run_name) != point.image_id:
        raise fail(ctx, ErrorCode.ROLLOUT_FAILED, f"re-importing {point.image_id[:19]} as {kept.run_name} failed")
    ctx.emit(f"restore_image=reimported {point.image_id[:19]} from Docker as {kept.run_name}")


async def restore_step(ctx: StepContext) -> None:
    """Put the recorded image and the objects the job changed back (ctx.service is the previous deploy)."""
    from kubernetes_asyncio.client import AppsV1Api, CoreV1Api
    from kubernetes_asyncio.client.exceptions import ApiException

    point: RestorePoint = ctx.shared[RESTORE_POINT]
    kept: K3sRestore = ctx.shared[K3S_RESTORE]
    k8s = ctx.service.k8s
    if k8s is None:
        raise fail(ctx, ErrorCode.ROLLOUT_FAILED, "no k8s objects")
    ns = k8s.namespace
    await _image_back(ctx, point, kept)
    session = await ctx.session()
    api = await session.kube()
    apps, core = AppsV1Api(api), CoreV1Api(api)
    calls: dict[str, tuple[Any, Any]] = {
        "Deployment": (apps.read_namespaced_deployment, apps.replace_namespaced_deployment),
        "Service": (core.read_namespaced_service, core.replace_namespaced_service),
    }
    changed: dict[tuple[str, str], dict | None] = ctx.shared.get(K8S_BEFORE) or {}
    restored: list[dict[str, Any]] = []
    for (kind, name), before in changed.items():
        if before is None:
            ctx.emit(f"restore_left={kind} {ns}/{name} (created by this job; nothing ran there before)")
            continue
        if (before.get("metadata") or {}).get("namespace") != ns:  # never outside the service's namespace
            raise fail(ctx, ErrorCode.ROLLOUT_FAILED, f"refusing to restore {kind} {name} outside namespace {ns}")
        read, replace = calls[kind]
        body = {"apiVersion": "apps/v1" if kind == "Deployment" else "v1", "kind": kind} | reapplicable(before)

        async def read_live(read: Any = read, name: str = name) -> dict:
            return api.sanitize_for_serialization(await read(name, ns, _request_timeout=10))

        async def write(current: dict, replace: Any = replace, name: str = name) -> None:
            await replace(name, ns, current, _request_timeout=10)

        def body_for(current: dict, body: dict = body) -> dict:
            return body | {
                "metadata": {**body["metadata"], "resourceVersion": current["metadata"].get("resourceVersion")}
            }

        try:
            await replace_latest(await read_live(), read_live, write, body_for)
        except ApiException as exc:
            raise fail(
                ctx, ErrorCode.ROLLOUT_FAILED, f"restoring {kind} {ns}/{name}: HTTP {exc.status} {exc.reason}"
            ) from None
        restored.append(body)
        ctx.emit(f"restore_applied={kind} {ns}/{name} (as before the job)")
    # restore-verify judges what is there now (fixed images included): the restored objects, and the
    # job's rendered ones it had not applied yet; and exactly the recorded image, not the failed build
    put_back = {(o["kind"], o["metadata"]["name"]) for o in restored}
    rendered = ctx.shared.get("k8s_objects") or []
    ctx.shared["k8s_objects"] = restored + [o for o in rendered if (o["kind"], o["metadata"]["name"]) not in put_back]
    ctx.shared["image_id"] = point.image_id
    ctx.shared["imported"] = kept.run_name
    ctx.emit(f"restore: {kept.run_name} -> {point.image_id} ({point.commit[:12]}, {point.detail})")
