"""Compose executors: `unidesk-direct` and `internal-sidecar` services run by Docker Compose.

Probe: the running container found by its compose project/service labels, its image's
`unidesk.ai/*` labels, its `UNIDESK_DEPLOY_*` env and health through the microservice proxy.
Apply: the shared target-side pipeline (proxy probe, source, build), then
`up -d --no-build --no-deps --force-recreate <svc>` with the deploy env, then verification.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from dataclasses import dataclass

import yaml

from executors.base import Executor, Step, register
from executors.docker_probe import ComposeRef, container_facts, image_present
from executors.health import health_expected, read_health
from executors.observe import docker_layers, missing, observed
from executors.stamp import COMPOSE_FILES, COMPOSE_PROJECT, COMPOSE_SERVICE, COMPOSE_WORKDIR, deploy_env
from executors.verify import verify_docker
from unidesk_tui.catalog import Catalog
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.identifiers import is_image_ref, is_plain_name, is_safe_path
from unidesk_tui.plan import DesiredService
from unidesk_tui.reconcile import Observation

log = logging.getLogger(__name__)


def compose_ref(service: DesiredService) -> ComposeRef:
    """Which containers belong to the service: the catalog's compose project/service, or, on a
    provider without a declared project, any project's container for that service name."""
    ms = service.microservice
    if ms is not None and ms.compose is not None:
        return ComposeRef(ms.compose.project, ms.compose.service)
    return ComposeRef(None, service.id)


@dataclass(frozen=True)
class ComposeTarget:
    """The compose project a service really runs in, as read from the target."""

    command: tuple[str, ...]  # ("docker", "compose") or ("docker-compose",)
    project: str
    service: str
    files: tuple[str, ...]
    workdir: str
    image: str

    def base_argv(self) -> list[str]:
        argv = [*self.command, "-p", self.project, "--project-directory", self.workdir]
        for f in self.files:
            argv += ["-f", f]
        return argv

    def up_argv(self) -> list[str]:
        return [*self.base_argv(), "up", "-d", "--no-build", "--no-deps", "--force-recreate", self.service]

    def config_argv(self) -> list[str]:
        return [*self.base_argv(), "config"]


def _refuse(service: DesiredService, message: str) -> UnideskError:
    return UnideskError.of(ErrorCode.ROLLOUT_FAILED, f"{service.id}: {message}", service=service.id)


def compose_identity(service: DesiredService, labels: dict[str, str] | None, *, provider: bool = False) -> tuple[str, str, tuple[str, ...], str]:
    """(project, service, files, working dir), never guessed: on the main server the catalog's
    fixed project; on a provider what the running container's compose labels say (the catalog's
    declaration only when no container runs yet)."""
    ms = service.microservice
    declared = ms.compose if ms else None
    labels = labels or {}
    if provider and labels.get(COMPOSE_PROJECT) and labels.get(COMPOSE_FILES):
        declared = None
    project = (declared.project if declared else None) or labels.get(COMPOSE_PROJECT)
    name = (declared.service if declared else None) or labels.get(COMPOSE_SERVICE)
    if declared and declared.file:
        files: tuple[str, ...] = (declared.file,)
    else:
        files = tuple(f for f in (labels.get(COMPOSE_FILES) or "").split(",") if f)
    workdir = labels.get(COMPOSE_WORKDIR) or (posixpath.dirname(files[0]) if files else "")
    if not project or not name or not files or not workdir:
        raise _refuse(service, "cannot resolve the compose project, service and file: no running container carries compose labels and config.json declares no compose.file")
    for value in (project, name):
        if not is_plain_name(value):
            raise _refuse(service, f"refusing compose name {value!r}")
    for path in (*files, workdir):
        if not (is_safe_path(path) and path.startswith("/")):
            raise _refuse(service, f"refusing compose path {path!r}")
    return project, name, files, workdir


def image_from_config(config_text: str, name: str) -> str | None:
    """The image a compose service runs, from `docker compose config` output."""
    try:
        doc = yaml.safe_load(config_text) or {}
    except yaml.YAMLError:
        return None
    svc = (doc.get("services") or {}).get(name) or {}
    image = svc.get("image")
    return image if isinstance(image, str) else None


async def compose_command(session) -> tuple[str, ...]:
    """`docker compose` when the target has v2, else `docker-compose`."""
    if (await session.run(["docker", "compose", "version"], timeout=30)).ok:
        return ("docker", "compose")
    if (await session.run(["docker-compose", "version"], timeout=30)).ok:
        return ("docker-compose",)
    raise UnideskError.of(ErrorCode.ROLLOUT_FAILED, f"target {session.target.id} has neither `docker compose` nor `docker-compose`")


async def resolve_step(ctx) -> None:
    """Read the compose project, file and image from the target (read-only)."""
    service = ctx.service
    session = await ctx.session()
    docker = await session.docker()
    facts = await container_facts(docker, compose_ref(service))
    project, name, files, workdir = compose_identity(service, facts.labels if facts else None, provider=ctx.target.role == "provider")
    command = await compose_command(session)
    env = deploy_env(service.id, service.repo, service.commit, service.requestedCommit)
    probe = ComposeTarget(command, project, name, files, workdir, "")
    res = await session.run(probe.config_argv(), env=env, timeout=60)
    if not res.ok:
        raise _refuse(service, f"`{' '.join(command)} config` failed on {ctx.target.id}: {res.tail(400)}")
    image = image_from_config(res.stdout, name) or (facts.image_ref if facts else None)
    if not image or not is_image_ref(image):
        raise _refuse(service, f"compose service {name} declares no usable image ({image!r}); declare `image:` in {files[0]}")
    ms = service.microservice
    if ms and ms.build and ms.build.image and ms.build.image != image:
        ctx.emit(f"warning: config.json build.image {ms.build.image} differs from the image compose runs ({image}); building {image}", "stderr")
    ctx.shared["compose"] = ComposeTarget(command, project, name, files, workdir, image)
    ctx.shared["image"] = image
    ctx.emit(f"compose_command={' '.join(command)}")
    ctx.emit(f"compose_project={project} compose_service={name} compose_files={','.join(files)} working_dir={workdir}")
    ctx.emit(f"target_image={image}" + (f" (running container {facts.name}, {facts.status})" if facts else " (no running container)"))


async def rollout_step(ctx) -> None:
    """`up -d --no-build --no-deps --force-recreate <svc>` with the UNIDESK_DEPLOY_* env for this command only."""
    service = ctx.service
    compose: ComposeTarget = ctx.shared["compose"]
    session = await ctx.session()
    env = deploy_env(service.id, service.repo, service.commit, service.requestedCommit)
    ctx.emit(f"rollout: {' '.join(compose.up_argv())} ({', '.join(f'{k}={v}' for k, v in env.items())})")
    res = await session.run(compose.up_argv(), env=env, timeout=300, on_line=lambda line, stream: ctx.emit(line, stream))
    if not res.ok:
        why = "timed out" if res.timed_out else res.tail(600)
        raise UnideskError.of(ErrorCode.ROLLOUT_FAILED, f"{ctx.target.id}: compose up of {compose.service} failed: {why}", service=service.id)
    ctx.emit(f"rollout: {compose.project}/{compose.service} recreated")


async def verify_step(ctx) -> None:
    compose: ComposeTarget | None = ctx.shared.get("compose")
    ref = ComposeRef(compose.project, compose.service) if compose else compose_ref(ctx.service)
    await verify_docker(ctx, ref, ctx.catalog.health_url(ctx.service.id, ctx.service.environment), health_expected(ctx.catalog, ctx.service))


class ComposeExecutor(Executor):
    """`unidesk-direct` (main server or provider): a compose service built on its own target."""

    mode = "unidesk-direct"

    async def probe(self, session, catalog: Catalog, service: DesiredService) -> Observation:
        docker = await session.docker()
        facts, present, reading = await asyncio.gather(
            container_facts(docker, compose_ref(service)),
            image_present(docker, service.id, service.commit),
            read_health(catalog.health_url(service.id, service.environment)),
        )
        if facts is None:
            return missing(f"no container for compose service {compose_ref(service).service}", reading, {}, present)
        if not facts.running:
            return missing(f"container {facts.name} is {facts.status}", reading, facts.evidence(), present)
        layers = docker_layers(facts.image_labels, facts.env, reading, health_expected(catalog, service))
        return observed(layers, service.commit, reading, facts.evidence(), present)

    def steps(self, service: DesiredService) -> list[Step]:
        from executors.pipeline import compose_steps

        return compose_steps(service)


class SidecarExecutor(ComposeExecutor):
    """`internal-sidecar` on the main server: the same pipeline, fixed compose project."""

    mode = "internal-sidecar"


register(ComposeExecutor)
register(SidecarExecutor)
