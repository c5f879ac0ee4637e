"""Native k3s containerd: the name `ctr` lists an image under, and the one Docker-to-containerd import
(`docker save` to a temporary file on the target, `ctr images import`, then the listing must show it).
"""

from __future__ import annotations

import posixpath
import re
import secrets

from executors.steps import run_checked
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.identifiers import is_image_ref
from unidesk_tui.identifiers import normalize_image as containerd_name  # `ctr images import` names images this way

IMPORT_TIMEOUT = 900.0


def image_tag(image: str) -> str:
    """The tag of a reference (`latest` when it has none)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def ctr_argv(node, *args: str) -> list[str]:
    return ["ctr", "-a", node.containerdSocket, "-n", node.containerdNamespace, *args]


def checked_image(image: str) -> str:
    if not image or not is_image_ref(image) or image.startswith("-"):
        raise UnideskError.of(ErrorCode.INVALID_VALUE, f"refusing image reference {image!r}")
    return image


async def listed_names(session, node) -> set[str]:
    """Every image name containerd lists in the node's namespace."""
    res = await session.run(ctr_argv(node, "images", "ls", "-q"), timeout=60)
    if not res.ok:
        raise UnideskError.of(ErrorCode.ROLLOUT_FAILED, f"listing containerd images failed: {res.tail(300)}")
    return set(res.stdout.split())


async def import_image(ctx, node, image: str, *, prefix: str, timeout: float = IMPORT_TIMEOUT) -> str:
    """Import `image` from the target's Docker into the node's containerd; returns the containerd
    name it is listed under. No pipes: a tmp file under workDir, always removed afterwards."""
    session = await ctx.session()
    image = checked_image(image)
    folder = posixpath.join(ctx.target.workDir, "images")
    slug = re.sub(r"[^A-Za-z0-9._-]", "-", image)
    tar = posixpath.join(folder, f"{prefix}-{slug}-{secrets.token_hex(4)}.tar")
    await run_checked(session, ctx, ["mkdir", "-p", "--", folder], ErrorCode.ROLLOUT_FAILED, "creating the image folder")
    try:
        await run_checked(session, ctx, ["docker", "save", "-o", tar, "--", image], ErrorCode.ROLLOUT_FAILED, f"docker save {image}", timeout=timeout)
        ctx.emit(f"image_saved={image} file={tar}")
        await run_checked(session, ctx, ctr_argv(node, "images", "import", tar), ErrorCode.ROLLOUT_FAILED, f"ctr images import {image}", timeout=timeout)
    finally:
        removed = await session.run(["rm", "-f", "--", tar], timeout=60)
        ctx.emit(f"image_tmp_removed={tar}" if removed.ok else f"image_tmp_left={tar}: {removed.tail(200)}", "stdout" if removed.ok else "stderr")
    return await require_listed(ctx, node, image)


async def require_listed(ctx, node, image: str) -> str:
    """containerd lists `image` under the name k3s looks it up by; returns that name."""
    full = containerd_name(image)
    if full not in await listed_names(await ctx.session(), node):
        ctx.emit(f"{full} is not in containerd", "stderr")
        raise UnideskError.of(ErrorCode.ROLLOUT_FAILED, f"{ctx.service.id}: {full} is not in containerd after the import", service=ctx.service.id)
    return full
