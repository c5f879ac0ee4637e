"""`dev-env prewarm-images`: import the D601 dev foundation images from the target's Docker into its
native k3s containerd, so k3s never depends on a live registry pull during the foundation rollout.

A task, not a deployment: it runs for a target (environments.dev.target), not for a catalog
microservice. Per image: it must already be in the target's Docker (missing fails with
`image_not_found`: pulling is not this command's job), then `docker save -o <tmp>` and
`ctr images import <tmp>` (the tmp file is always removed), then containerd must list it.
"""

from __future__ import annotations

from executors.base import Executor, Step
from executors.containerd import checked_image, import_image, require_listed
from executors.k3s_apply import preflight_step
from executors.steps import fail, k3s_node
from unidesk_tui.devrules import FOUNDATION_IMAGES, PREWARM_MODE, PREWARM_TASK
from unidesk_tui.errors import ErrorCode, UnideskError

MODE, TASK_ID = PREWARM_MODE, PREWARM_TASK
SAVE_TIMEOUT = 900.0

_image = checked_image


def present_step(image: str):
    async def run(ctx) -> None:
        """The image must already be in the target's Docker: this command imports, never pulls."""
        session = await ctx.session()
        res = await session.run(["docker", "image", "inspect", "--format", "{{.Id}}", "--", _image(image)], timeout=60)
        if not res.ok:
            if "No such image" in res.stderr or "no such image" in res.stderr.lower():
                raise fail(
                    ctx,
                    ErrorCode.IMAGE_NOT_FOUND,
                    f"foundation image {image} is not in {ctx.target.id}'s Docker; load or pull it there first "
                    "(prewarm-images only imports)",
                )
            raise fail(
                ctx, ErrorCode.PROBE_FAILED, f"docker image inspect {image} on {ctx.target.id} failed: {res.tail(300)}"
            )
        ctx.emit(f"prewarm_docker_image={image} id={res.stdout.strip()[:19]}")

    return run


def import_step(image: str):
    async def run(ctx) -> None:
        """`docker save -o <tmp>` then `ctr images import <tmp>` (no pipes), the tmp file removed after."""
        full = await import_image(ctx, k3s_node(ctx), _image(image), prefix="prewarm", timeout=SAVE_TIMEOUT)
        ctx.emit(f"prewarm_imported={full}")

    return run


def verify_step(image: str):
    async def run(ctx) -> None:
        """containerd lists the image under the name k3s will look it up by."""
        node = k3s_node(ctx)
        full = await require_listed(ctx, node, image)
        ctx.emit(f"k3s_image_present={full} containerd={node.containerdSocket} namespace={node.containerdNamespace}")

    return run


class PrewarmExecutor(Executor):
    """The foundation image import as job steps (a task: no catalog microservice behind it)."""

    task = True

    async def probe(self, session, catalog, service):
        raise UnideskError.of(ErrorCode.UNSUPPORTED_SERVICE, f"{service.id}: a task has no live state to probe")

    def steps(self, service, images: tuple[str, ...] = FOUNDATION_IMAGES) -> list[Step]:
        out = [Step("k3s-preflight", preflight_step, read_only=True)]
        for image in images:
            _image(image)
            out += [
                Step(f"docker-image {image}", present_step(image), read_only=True),
                Step(f"k3s-import {image}", import_step(image)),
                Step(f"k3s-verify {image}", verify_step(image), read_only=True),
            ]
        return out
