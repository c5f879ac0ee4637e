"""The k3s pod sandbox image: preload `targets[].k3s.pauseImage` into native k3s containerd and
prove it is a real pause image before anything is imported or applied.

When the image is absent it is pulled with `ctr images pull`, the node's egress proxy set only on
that one command (the provider-gateway one-shot egress path; no egress proxy means failure, never
a direct pull). Present or pulled, its config blob is read from the content store (ctr 1.6 has no
`images inspect`) and its entrypoint must be `/pause`: a fake or sleep-based image is rejected
with `pause_image_invalid` (and removed again when this step pulled it).
"""

from __future__ import annotations

import json

from executors.containerd import DIGEST_RE, ctr_argv, listed_digest
from executors.proxy import ProxyScope, scope_for
from executors.steps import QuietContext, fail, k3s_node, run_checked
from unidesk_tui.catalog import PULL_REF_RE
from unidesk_tui.errors import ErrorCode, UnideskError

PULL_TIMEOUT = 600.0
PAUSE_ENTRYPOINT = ["/pause"]
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


def sandbox_entrypoint(config: dict) -> list[str]:
    """What the image runs: its Entrypoint, or its Cmd when the Entrypoint is empty."""
    c = config.get("config") or {}
    entry = c.get("Entrypoint") or []
    return [str(a) for a in (entry if entry else (c.get("Cmd") or []))]


def check_pause_config(raw: str | bytes) -> tuple[bool, str]:
    """(ok, what the image runs) for an image config blob; ok only for exactly `/pause`."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return False, "an unreadable config (not JSON)"
    if not isinstance(doc, dict) or not isinstance(doc.get("config") or {}, dict):
        return False, "an unreadable config (not an image config object)"
    argv = sandbox_entrypoint(doc)
    return argv == PAUSE_ENTRYPOINT, json.dumps(argv) if argv else "empty (no Entrypoint, no Cmd)"


async def _content(session, ctx, node, digest: str) -> str | None:
    """One blob of the content store, or None when it is not there (another platform's manifest)."""
    if not DIGEST_RE.match(digest):
        raise fail(ctx, ErrorCode.PAUSE_IMAGE_INVALID, f"pause image: refusing digest {digest!r}")
    res = await session.run(ctr_argv(node, "content", "get", digest), timeout=60)
    return res.stdout if res.ok else None


async def config_blobs(session, ctx, node, ref: str) -> list[str]:
    """The config blob of every platform manifest of `ref` that the content store holds."""
    listing = await run_checked(
        session,
        QuietContext(ctx),
        ctr_argv(node, "images", "ls"),
        ErrorCode.ROLLOUT_FAILED,
        "listing containerd images",
    )
    digest = listed_digest(listing.stdout, ref)
    if digest is None:
        raise fail(ctx, ErrorCode.PAUSE_IMAGE_INVALID, f"pause image {ref} is not listed by containerd")
    top = await _content(session, ctx, node, digest)
    try:
        doc = json.loads(top or "")
        manifests = (
            [m["digest"] for m in doc["manifests"]]
            if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc
            else None
        )
        docs = (
            [doc]
            if manifests is None
            else [json.loads(t) for t in [await _content(session, ctx, node, d) for d in manifests] if t]
        )
        configs = [await _content(session, ctx, node, d["config"]["digest"]) for d in docs]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise fail(
            ctx, ErrorCode.PAUSE_IMAGE_INVALID, f"pause image {ref}: its manifest is unreadable in the content store"
        ) from None
    if not configs or any(c is None for c in configs):
        raise fail(
            ctx, ErrorCode.PAUSE_IMAGE_INVALID, f"pause image {ref}: its config blob is missing from the content store"
        )
    return [c for c in configs if c is not None]


async def pause_verdict(session, ctx, node, ref: str) -> tuple[bool, str]:
    """(ok, what it runs): every platform config of `ref` must run exactly `/pause`."""
    for blob in await config_blobs(session, ctx, node, ref):
        ok, runs = check_pause_config(blob)
        if not ok:
            return False, runs
    return True, json.dumps(PAUSE_ENTRYPOINT)


async def pull_pause(session, ctx, node, ref: str) -> str:
    """`ctr images pull` through the node's egress path only (never direct); returns the channel."""
    scope: ProxyScope | None = ctx.shared.get("proxy")
    if scope is None or scope.direct:
        try:
            scope = scope_for(ctx.target, True)  # the sandbox image always comes through the egress path
        except UnideskError as exc:
            raise fail(
                ctx, ErrorCode.PROXY_PROBE_FAILED, f"cannot pull pause image {ref}: {exc.problems[0].message}"
            ) from None
    argv = ["images", "pull", *(["--plain-http"] if node.registryPlainHttp else []), ref]
    ctx.emit(f"k3s_pause_image_pull=ctr {' '.join(argv)} via {scope.describe()}")
    await run_checked(
        session,
        QuietContext(ctx),
        ctr_argv(node, *argv),
        ErrorCode.ROLLOUT_FAILED,
        f"pulling pause image {ref} through {scope.describe()}",
        env=scope.env(),
        timeout=PULL_TIMEOUT,
    )
    return scope.describe()


async def pause_image_step(ctx) -> None:
    """Preload the sandbox image through the egress proxy when absent; require `/pause`. A present
    image that fails the check (a fake or sleep-based one) is removed and replaced the same way;
    only when the one pulled fails too does the job fail with `pause_image_invalid`."""
    node = k3s_node(ctx)
    ref = node.pauseImage
    if not PULL_REF_RE.fullmatch(ref):  # validated by the catalog; checked again before use
        raise fail(ctx, ErrorCode.INVALID_VALUE, f"refusing pause image reference {ref!r}")
    ctx.emit(f"k3s_pause_image={ref}")
    session = await ctx.session()
    listed = await run_checked(
        session,
        QuietContext(ctx),
        ctr_argv(node, "images", "ls", "-q"),
        ErrorCode.ROLLOUT_FAILED,
        "listing containerd images",
    )
    replaced = None
    if ref in listed.stdout.split():
        ok, runs = await pause_verdict(session, ctx, node, ref)
        if ok:
            ctx.emit("k3s_pause_image_source=present")
            ctx.emit("k3s_pause_image_entrypoint=/pause")
            return
        replaced = runs
        ctx.emit(
            f"k3s_pause_image_invalid_present={ref}: its entrypoint is {runs}; replacing it through the egress path",
            "stderr",
        )
        removed = await session.run(ctr_argv(node, "images", "rm", ref), timeout=60)
        if not removed.ok:
            raise fail(
                ctx,
                ErrorCode.PAUSE_IMAGE_INVALID,
                f"pause image {ref} runs {runs} and cannot be removed: {removed.tail(300)}",
            )
    channel = await pull_pause(session, ctx, node, ref)
    ctx.emit(f"k3s_pause_image_source=pulled via {channel}")
    try:
        ok, runs = await pause_verdict(session, ctx, node, ref)
    except UnideskError:
        ok, runs = False, "unreadable"
    if not ok:  # do not leave an impostor where k3s would find it
        await session.run(ctr_argv(node, "images", "rm", ref), timeout=60)
        ctx.emit(f"k3s_pause_image_removed={ref}", "stderr")
        raise fail(
            ctx,
            ErrorCode.PAUSE_IMAGE_INVALID,
            f'pause image {ref} is not a valid sandbox image: its entrypoint is {runs}, expected ["/pause"]'
            + (" (the one present before ran " + replaced + " and was removed)" if replaced else ""),
        )
    if replaced:
        ctx.emit(
            f"k3s_pause_image_replaced={ref}: the image present ran {replaced}; a valid one was pulled via {channel}"
        )
    ctx.emit("k3s_pause_image_entrypoint=/pause")
