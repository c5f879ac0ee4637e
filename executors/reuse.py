"""Instant rollback to a built commit: reuse the image the reconciler already built on the target.

When the target still holds the image recorded for (service, commit) in this scope (its provenance
record, and the commit tag naming the recorded image ID: executors/provenance.py), the service's
tag is pointed back at it and fetching and building are skipped; the job logs
`target_build=reused <image id>`. Going back to a previous commit is then a rollout only.
`--force` always rebuilds.
"""

from __future__ import annotations

from executors.base import SKIP_STEPS, StepContext, StepFn
from executors.provenance import built_image
from executors.source import prune_dead_contexts, remove_context
from unidesk_tui.errors import ErrorCode, UnideskError


def reuse_step(skips: tuple[str, ...]) -> StepFn:
    """The step for a pipeline whose `skips` steps (e.g. source, build) a reused image makes moot."""

    async def run(ctx: StepContext) -> None:
        service = ctx.service
        if ctx.force:
            ctx.emit("target_build=rebuild (--force)")
            return
        image = ctx.shared.get("image") or service.image
        session = await ctx.session()
        if not service.commit:
            raise UnideskError.of(ErrorCode.BUILD_FAILED, f"{service.id}: no resolved commit", service=service.id)
        record = await built_image(session, ctx.target.workDir, service.id, service.environment, service.commit)
        if record is None:
            ctx.emit(
                f"target_build=needed (no image built by the reconciler for {service.commit[:12]} on {ctx.target.id})"
            )
            return
        if record.image != image or record.repo != service.repo:
            why = f"image {record.image}" if record.image != image else f"repository {record.repo}"
            ctx.emit(
                f"target_build=needed (the recorded build of {service.commit[:12]} has {why}; this run wants {image} "
                f"from {service.repo})"
            )
            return
        tagged = await session.run(["docker", "tag", record.imageId, image], timeout=60)
        if not tagged.ok:
            raise UnideskError.of(
                ErrorCode.BUILD_FAILED,
                f"{ctx.target.id}: cannot tag {record.imageId[:19]} as {image}: {tagged.tail(300)}",
                service=service.id,
            )
        ctx.shared["image_id"] = record.imageId
        why = f"reusing {record.commitTag} ({record.imageId[:19]}), built {record.builtAt}"
        ctx.shared.setdefault(SKIP_STEPS, {}).update({name: why for name in skips})
        if "source" in skips:  # its pruning too: a killed build's context must not outlive this apply
            await prune_dead_contexts(session, ctx, ctx.target.workDir, service.environment or "file", service.id)
        context = ctx.shared.pop("context", None)  # made by a source step that ran first (k3s): only the build used it
        if context and "build" in skips and await remove_context(session, ctx.target.workDir, context):
            ctx.emit(f"target_build_context_removed={context}")
        ctx.emit(f"target_build=reused {record.imageId}")
        ctx.emit(f"target_build_reused={record.commitTag} -> {image} (no fetch, no build: {', '.join(skips)} skipped)")

    return run
