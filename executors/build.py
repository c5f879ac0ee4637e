"""Target-side image build with the target daemon's BuildKit, stamped with the four labels.

`docker buildx build` when the target has buildx, else the daemon's built-in BuildKit
(`DOCKER_BUILDKIT=1 docker build`). Inline cache metadata is always written, the current image is
the cache source when it exists, a declared `<image>-build-base` is passed as the base-image
argument, providers build with `--network host` so the loopback egress proxy is reachable from
RUN steps. Every cache source and destination is logged; the build context is removed afterwards.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import dataclass

from executors.provenance import new_record, write_record
from executors.proxy import ProxyScope
from executors.source import remove_context
from executors.stamp import LABEL_COMMIT, image_labels
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.identifiers import is_image_ref, is_plain_name
from unidesk_tui.redact import redact_url

BUILD_TIMEOUT = None  # bounded by the engine: config.json microservices[].timeouts.build


@dataclass(frozen=True)
class BuildSource:
    """What to build, as paths inside the repository: from the running service's compose config
    on a provider, else from config.json's `build`."""

    context: str
    dockerfile: str
    target: str | None
    origin: str  # "docker compose config" | "config.json"


@dataclass(frozen=True)
class BuildPlan:
    """Everything that decides the build command line."""

    image: str
    context_dir: str  # absolute, on the target
    dockerfile: str  # absolute, on the target
    labels: dict[str, str]
    buildx: bool
    network_host: bool
    cache_from: str | None
    base_arg: tuple[str, str] | None  # (ARG name, image)
    proxy: ProxyScope
    target: str | None = None  # the Dockerfile stage to build (`--target`)

    def argv(self) -> list[str]:
        if self.buildx:
            argv = ["docker", "buildx", "build", "--load", "--cache-to", "type=inline"]
        else:
            argv = ["docker", "build", "--build-arg", "BUILDKIT_INLINE_CACHE=1"]
        if self.cache_from:
            argv += ["--cache-from", self.cache_from]
        if self.network_host:
            argv += ["--network", "host"]
        if self.base_arg:
            argv += ["--build-arg", f"{self.base_arg[0]}={self.base_arg[1]}"]
        argv += self.proxy.build_args()
        if self.target:
            argv += ["--target", self.target]
        for key, value in self.labels.items():
            argv += ["--label", f"{key}={value}"]
        argv += ["-f", self.dockerfile, "-t", self.image, "--", self.context_dir]
        return argv

    def env(self) -> dict[str, str]:
        """Only the classic client needs a switch to use BuildKit; nothing else is exported."""
        return {} if self.buildx else {"DOCKER_BUILDKIT": "1"}

    def printable(self) -> str:
        """The command for the log, with proxy credentials redacted."""
        return " ".join(redact_url(a) for a in self.argv())


def build_base_image(image: str) -> str:
    """The target-local warm base image for `image` (the spec's `<image>-build-base`)."""
    return f"{image}-build-base"


def base_candidates(image: str, production: str | None = None) -> list[str]:
    """Warm base images to try, in order: `<image>-build-base`; for an environment image also the
    production `<production>-build-base`, then the production image itself (only read, never
    retagged), e.g. unidesk-code-queue:d601-build-base for a unidesk-code-queue:dev build."""
    out = [build_base_image(image)]
    if production and production != image:
        out += [build_base_image(production), production]
    return out


def repo_file(context_root: str, relative: str) -> str:
    path = posixpath.normpath(posixpath.join(context_root, relative))
    if not (path == context_root or path.startswith(context_root + "/")):
        raise UnideskError.of(ErrorCode.INVALID_VALUE, f"{relative!r} leaves the build context")
    return path


async def _ok(session, argv: list[str]) -> bool:
    return (await session.run(argv, timeout=60)).ok


async def record_build(ctx, session, image: str, image_id: str) -> None:
    """Provenance: tag the exact image just built `<repository>:<tag>-<12 hex>` and record it on the
    target, so `deploy check` can tell it from a look-alike (see executors/provenance.py)."""
    service, target = ctx.service, ctx.target
    record = new_record(service.id, service.environment, service.commit, image, image_id, service.repo)
    tagged = await session.run(["docker", "tag", image_id, record.commitTag], timeout=60)
    if not tagged.ok:
        raise UnideskError.of(
            ErrorCode.BUILD_FAILED,
            f"{target.id}: cannot tag {image_id[:19]} as {record.commitTag}: {tagged.tail(300)}",
            service=service.id,
        )
    try:
        path = await write_record(session, target.workDir, record)
    except RuntimeError as exc:
        raise UnideskError.of(
            ErrorCode.BUILD_FAILED, f"{target.id}: provenance record: {exc}", service=service.id
        ) from None
    ctx.emit(f"target_build_commit_tag={record.commitTag}")
    ctx.emit(f"provenance_record={path} imageId={image_id}")


async def build_step(ctx) -> None:
    session = await ctx.session()
    service, target = ctx.service, ctx.target
    ms = service.microservice
    image = ctx.shared.get("image") or service.image  # an environment run builds its own image
    root = ctx.shared.get("context")
    if not root:
        raise UnideskError.of(
            ErrorCode.BUILD_FAILED, f"{service.id}: no build context was materialized", service=service.id
        )
    try:
        if not image or not is_image_ref(image):
            raise UnideskError.of(
                ErrorCode.BUILD_FAILED, f"{service.id}: no valid image name to build ({image!r})", service=service.id
            )
        build = ms.build
        if build.baseImageArg and not is_plain_name(build.baseImageArg):
            raise UnideskError.of(ErrorCode.INVALID_VALUE, f"invalid baseImageArg {build.baseImageArg!r}")
        bases = base_candidates(image, build.image if service.environment.named else None) if build.baseImageArg else []
        # Independent reads of the target: one round trip instead of several.
        buildx, has_bridge, has_image, *has_bases = await asyncio.gather(
            _ok(session, ["docker", "buildx", "version"]),
            _ok(session, ["docker", "network", "inspect", "bridge"]),
            _ok(session, ["docker", "image", "inspect", "--", image]),
            *(_ok(session, ["docker", "image", "inspect", "--", b]) for b in bases),
        )
        # Providers always; any target whose daemon has no default bridge (RUN steps would have no network).
        source: BuildSource = ctx.shared.get("build_source") or BuildSource(
            build.context, build.dockerfile, None, "config.json"
        )
        network_host = target.role == "provider" or not has_bridge
        cache_from = image if has_image else None
        base = next((b for b, present in zip(bases, has_bases, strict=False) if present), None)
        base_arg = (build.baseImageArg, base) if base else None
        plan = BuildPlan(
            image=image,
            context_dir=repo_file(root, source.context),
            dockerfile=repo_file(root, source.dockerfile),
            labels=image_labels(service.id, service.repo, service.commit, source.dockerfile),
            buildx=buildx,
            network_host=network_host,
            cache_from=cache_from,
            base_arg=base_arg,
            proxy=ctx.shared.get("proxy") or ProxyScope(None),
            target=source.target,
        )
        ctx.emit(
            f"target_build_source=context {source.context} dockerfile {source.dockerfile}"
            + (f" target {source.target}" if source.target else "")
            + f" (from {source.origin})"
        )
        ctx.emit(
            f"target_build_builder={'buildx' if buildx else 'docker-builtin-buildkit'} (target daemon, local cache)"
        )
        ctx.emit(f"target_build_cache_from={cache_from or 'none (no current image)'}")
        ctx.emit(f"target_build_cache_to={'type=inline' if buildx else 'inline (BUILDKIT_INLINE_CACHE=1)'} -> {image}")
        if base_arg:
            ctx.emit(f"target_build_base_image={base_arg[1]}")
        elif build.baseImageArg:
            ctx.emit(
                f"target_build_base_image=none ({', '.join(bases)} not present; {build.baseImageArg} keeps its default)"
            )
        ctx.emit(f"target_build_network={'host' if network_host else 'default'}")
        ctx.emit(f"target_build_command={plan.printable()}")
        res = await session.run(
            plan.argv(),
            env=plan.env(),
            timeout=BUILD_TIMEOUT,
            on_line=lambda line, stream: ctx.emit(redact_url(line), stream),
        )
        if not res.ok:
            why = "timed out" if res.timed_out else redact_url(res.tail(600))
            raise UnideskError.of(
                ErrorCode.BUILD_FAILED, f"{target.id}: build of {image} failed: {why}", service=service.id
            )
        inspect = await session.run(
            [
                "docker",
                "image",
                "inspect",
                "--format",
                '{{.Id}} {{index .Config.Labels "' + LABEL_COMMIT + '"}}',
                "--",
                image,
            ],
            timeout=60,
        )
        image_id, _, label = inspect.stdout.strip().partition(" ")
        if not inspect.ok or label != service.commit:
            raise UnideskError.of(
                ErrorCode.BUILD_FAILED,
                f"{target.id}: built image {image} is labelled {label or 'nothing'}, expected {service.commit}",
                service=service.id,
            )
        ctx.shared["image_id"] = image_id
        ctx.emit(f"target_build_image={image} {image_id[:19]} unidesk.ai/source-commit={label}")
        await record_build(ctx, session, image, image_id)
    finally:
        removed = await remove_context(session, target.workDir, root)
        ctx.shared.pop("context", None)
        ctx.emit(
            f"target_build_context_removed={root}" if removed else f"target_build_context_cleanup_failed={root}",
            "stdout" if removed else "stderr",
        )
