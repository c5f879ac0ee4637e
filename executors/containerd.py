"""Native k3s containerd: the name `ctr` lists an image under, and the one Docker-to-containerd import
(`docker save` to a temporary file on the target, `ctr images import`, then the listing must show it).
"""

from __future__ import annotations

import json
import posixpath
import re
import secrets

from executors.steps import run_checked
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.identifiers import is_image_ref
from unidesk_tui.identifiers import normalize_image as containerd_name  # `ctr images import` names images this way

IMPORT_TIMEOUT = 900.0
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


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


def service_tar_prefix(ctx, what: str) -> str:
    """`<environment>--<service>-<what>`: what a service's import names its tarball with; `what` is
    a 12-hex commit or `restore` (dead_tar_re tells them from another service's)."""
    return f"{ctx.service.environment}--{ctx.service.id}-{what}"


def dead_tar_re(ctx) -> re.Pattern[str]:
    return re.compile(
        rf"^{re.escape(f'{ctx.service.environment}--{ctx.service.id}')}-(?:[0-9a-f]{{12}}|restore)-.+-[0-9a-f]{{8}}\.tar$"
    )


async def prune_dead_tars(ctx, session, folder: str) -> None:
    """Tarballs of this (environment, service) left by jobs killed mid-import. Called under the job's
    target lock for the pair, so none of them belongs to a running job."""
    listing = await session.run(["ls", "-A", "--", folder], timeout=60)
    pattern = dead_tar_re(ctx)
    dead = [posixpath.join(folder, n) for n in listing.stdout.split() if pattern.match(n)] if listing.ok else []
    if dead and (await session.run(["rm", "-f", "--", *dead], timeout=60)).ok:
        for path in dead:
            ctx.emit(f"image_tmp_pruned={path}")


async def import_image(
    ctx, node, image: str, *, prefix: str, timeout: float = IMPORT_TIMEOUT, prune: bool = False
) -> str:
    """Import `image` from the target's Docker into the node's containerd; returns the containerd
    name it is listed under. No pipes: a tmp file under workDir, always removed afterwards (and,
    with `prune`, those a killed job of this service left: its prefix is service_tar_prefix's)."""
    session = await ctx.session()
    image = checked_image(image)
    folder = posixpath.join(ctx.target.workDir, "images")
    slug = re.sub(r"[^A-Za-z0-9._-]", "-", image)
    tar = posixpath.join(folder, f"{prefix}-{slug}-{secrets.token_hex(4)}.tar")
    await run_checked(
        session, ctx, ["mkdir", "-p", "--", folder], ErrorCode.ROLLOUT_FAILED, "creating the image folder"
    )
    if prune:
        await prune_dead_tars(ctx, session, folder)
    try:
        await run_checked(
            session,
            ctx,
            ["docker", "save", "-o", tar, "--", image],
            ErrorCode.ROLLOUT_FAILED,
            f"docker save {image}",
            timeout=timeout,
        )
        ctx.emit(f"image_saved={image} file={tar}")
        await run_checked(
            session,
            ctx,
            ctr_argv(node, "images", "import", tar),
            ErrorCode.ROLLOUT_FAILED,
            f"ctr images import {image}",
            timeout=timeout,
        )
    finally:
        removed = await session.run(["rm", "-f", "--", tar], timeout=60)
        ctx.emit(
            f"image_tmp_removed={tar}" if removed.ok else f"image_tmp_left={tar}: {removed.tail(200)}",
            "stdout" if removed.ok else "stderr",
        )
    return await require_listed(ctx, node, image)


async def require_listed(ctx, node, image: str) -> str:
    """containerd lists `image` under the name k3s looks it up by; returns that name."""
    full = containerd_name(image)
    if full not in await listed_names(await ctx.session(), node):
        ctx.emit(f"{full} is not in containerd", "stderr")
        raise UnideskError.of(
            ErrorCode.ROLLOUT_FAILED,
            f"{ctx.service.id}: {full} is not in containerd after the import",
            service=ctx.service.id,
        )
    return full


def listed_digest(listing: str, ref: str) -> str | None:
    """The target digest of `ref` in `ctr images ls` output (REF TYPE DIGEST SIZE PLATFORMS LABELS)."""
    for line in listing.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 2 and cols[0] == ref and DIGEST_RE.match(cols[2]):
            return cols[2]
    return None


async def image_id(session, node, image: str) -> str | None:
    """The image ID (config digest, the same as Docker's after `docker save | ctr images import`)
    containerd holds under `image`, or None when it holds none (read-only)."""
    name = containerd_name(checked_image(image))
    listing = await session.run(ctr_argv(node, "images", "ls"), timeout=60)
    digest = listed_digest(listing.stdout, name) if listing.ok else None
    if digest is None:
        return None
    top = await session.run(ctr_argv(node, "content", "get", digest), timeout=60)
    try:
        doc = json.loads(top.stdout) if top.ok else {}
        if "manifests" in doc:  # an index: the linux/amd64 (or only) manifest
            chosen = next(
                (m for m in doc["manifests"] if (m.get("platform") or {}).get("architecture") == "amd64"),
                doc["manifests"][0],
            )
            sub = (
                await session.run(ctr_argv(node, "content", "get", chosen["digest"]), timeout=60)
                if DIGEST_RE.match(chosen["digest"])
                else None
            )
            doc = json.loads(sub.stdout) if sub is not None and sub.ok else {}
        config = doc["config"]["digest"]
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return config if DIGEST_RE.match(config) else None
