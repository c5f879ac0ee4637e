"""Compose executors: `unidesk-direct` and `internal-sidecar` services run by Docker Compose.

Probe: the running container found by its compose project/service labels, its image's
`unidesk.ai/*` labels, its `UNIDESK_DEPLOY_*` env and health through the microservice proxy.
Apply: the shared target-side pipeline (proxy probe, source, build), then
`up -d --no-build --no-deps --force-recreate <svc>` with the deploy env, then verification.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import dataclass, replace
from typing import Any

import yaml

from executors.base import RESTORE_POINT, Executor, RestorePoint, Step, StepContext
from executors.build import BuildSource, build_step
from executors.compose_override import is_override, override_path, override_text
from executors.docker_probe import ComposeRef, ContainerFacts, container_facts, image_present
from executors.health import health_expected, read_health
from executors.observe import docker_layers, missing, observed, with_identity
from executors.provenance import expected_image_id, judge, read_record, write_text
from executors.proxy import probe_step
from executors.reuse import reuse_step
from executors.source import source_step
from executors.stamp import (
    COMPOSE_FILES,
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    COMPOSE_WORKDIR,
    ENV_REPO,
    ENV_REQUESTED,
    LABEL_COMMIT,
    LABEL_REPO,
    deploy_env,
)
from executors.verify import verify_docker
from unidesk_tui.catalog import Catalog
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.identifiers import is_image_ref, is_plain_name, is_relative_repo_path, is_safe_path
from unidesk_tui.isolation import refuse_unisolated
from unidesk_tui.model import DesiredService, Observation


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
    override: str | None = None  # the reconciler's deploy-env override (rollout only)

    def base_argv(self) -> list[str]:
        argv = [*self.command, "-p", self.project, "--project-directory", self.workdir]
        for f in (*self.files, *([self.override] if self.override else [])):
            argv += ["-f", f]
        return argv

    def up_argv(self) -> list[str]:
        return [*self.base_argv(), "up", "-d", "--no-build", "--no-deps", "--force-recreate", self.service]

    def config_argv(self) -> list[str]:
        return [*self.base_argv(), "config"]


@dataclass(frozen=True)
class ComposeIdentity:
    """Where a compose service runs (project, service, files, working dir) and how that was found."""

    project: str
    service: str
    files: tuple[str, ...]
    workdir: str
    notes: tuple[str, ...] = ()  # what the log should say: stale config.json values, fallbacks


def _refuse(service: DesiredService, message: str) -> UnideskError:
    return UnideskError.of(ErrorCode.ROLLOUT_FAILED, f"{service.id}: {message}", service=service.id)


def label_files(labels: dict[str, str], workdir: str) -> tuple[str, ...]:
    """The compose files a container was created from; a relative `-f` resolves against the
    project's working directory (compose v1 records `-f` as given). Our own override is dropped."""
    files = []
    for f in (labels.get(COMPOSE_FILES) or "").split(","):
        f = f.strip()
        if f and not is_override(f):
            files.append(f if f.startswith("/") or not workdir else posixpath.normpath(posixpath.join(workdir, f)))
    return tuple(files)


def compose_identity(
    service: DesiredService, labels: dict[str, str] | None, *, provider: bool = False
) -> ComposeIdentity:
    """Never guessed: on the main server the catalog's fixed project; on a provider what the
    running container's compose labels say. config.json is the provider's fallback only when no
    container names its project, and a config.json value the container contradicts is reported."""
    ms = service.microservice
    declared = ms.compose if ms else None
    labels = labels or {}
    notes: list[str] = []
    project: str | None
    name: str | None
    from_labels = provider and bool(
        labels.get(COMPOSE_PROJECT) and labels.get(COMPOSE_FILES) and labels.get(COMPOSE_SERVICE)
    )
    if from_labels:
        project, name = labels[COMPOSE_PROJECT], labels[COMPOSE_SERVICE]
        workdir = labels.get(COMPOSE_WORKDIR) or ""
        files = label_files(labels, workdir)
        workdir = workdir or (posixpath.dirname(files[0]) if files else "")
        if declared and declared.project and declared.project != project:
            notes.append(
                f"config.json compose.project {declared.project} is stale: the running container belongs to project "
                f"{project}; using {project}"
            )
        if declared and declared.file and posixpath.normpath(declared.file) not in files:
            notes.append(
                f"config.json compose.file {declared.file} is not what the running container was created from "
                f"({', '.join(files)}); using the container's"
            )
    else:
        project = (declared.project if declared else None) or labels.get(COMPOSE_PROJECT)
        name = (declared.service if declared else None) or labels.get(COMPOSE_SERVICE)
        workdir = labels.get(COMPOSE_WORKDIR) or ""
        files = (declared.file,) if declared and declared.file else label_files(labels, workdir)
        workdir = workdir or (posixpath.dirname(files[0]) if files else "")
        if provider:
            notes.append(
                "no running container names its compose project: using config.json's compose declaration (fallback)"
            )
    if not project or not name or not files or not workdir:
        raise _refuse(
            service,
            "cannot resolve the compose project, service and file: no running container carries compose labels and "
            "config.json declares no compose.file",
        )
    for value in (project, name):
        if not is_plain_name(value):
            raise _refuse(service, f"refusing compose name {value!r}")
    for path in (*files, workdir):
        if not (is_safe_path(path) and path.startswith("/")):
            raise _refuse(service, f"refusing compose path {path!r}")
    return ComposeIdentity(project, name, files, workdir, tuple(notes))


def _config_service(config_text: str, name: str) -> tuple[dict, dict]:
    """(whole document, the service's entry) of `docker compose config` output."""
    try:
        doc = yaml.safe_load(config_text) or {}
    except yaml.YAMLError:
        return {}, {}
    if not isinstance(doc, dict):
        return {}, {}
    svc = (doc.get("services") or {}).get(name) or {}
    return doc, svc if isinstance(svc, dict) else {}


def image_from_config(config_text: str, name: str) -> str | None:
    """The image a compose service runs, from `docker compose config` output."""
    image = _config_service(config_text, name)[1].get("image")
    return image if isinstance(image, str) else None


def config_version(config_text: str) -> str | None:
    """The file format version `docker compose config` reports (compose v1 needs it in an override)."""
    version = _config_service(config_text, "")[0].get("version")
    return str(version) if isinstance(version, (str, int, float)) else None


@dataclass(frozen=True)
class BuildDeclaration:
    """A compose service's `build:` as `docker compose config` resolves it (context absolute)."""

    context: str
    dockerfile: str  # relative to the context, or absolute
    target: str | None


def repository_build(declared: BuildDeclaration, root: str) -> BuildSource | None:
    """The declaration as paths inside the repository checked out at `root` (pure); None when the
    context or Dockerfile lies outside it."""
    if not root or not root.startswith("/"):
        return None
    context = posixpath.normpath(declared.context)
    dockerfile = posixpath.normpath(posixpath.join(context, declared.dockerfile))
    rel = []
    for path in (context, dockerfile):
        if path != root and not path.startswith(root.rstrip("/") + "/"):
            return None
        rel.append(posixpath.relpath(path, root))
    if declared.target is not None and not is_plain_name(declared.target):
        return None
    if not all(is_relative_repo_path(r) for r in rel):
        return None
    return BuildSource(rel[0], rel[1], declared.target, "docker compose config")


def build_from_config(config_text: str, name: str) -> BuildDeclaration | None:
    """The service's `build:` (context, Dockerfile, target) from `docker compose config`, or None."""
    build = _config_service(config_text, name)[1].get("build")
    if isinstance(build, str):
        build = {"context": build}
    if not isinstance(build, dict) or not isinstance(build.get("context"), str):
        return None
    dockerfile, target = build.get("dockerfile"), build.get("target")
    return BuildDeclaration(
        build["context"],
        dockerfile if isinstance(dockerfile, str) else "Dockerfile",
        target if isinstance(target, str) else None,
    )


async def compose_command(session) -> tuple[str, ...]:
    """`docker compose` when the target has v2, else `docker-compose`."""
    if (await session.run(["docker", "compose", "version"], timeout=30)).ok:
        return ("docker", "compose")
    if (await session.run(["docker-compose", "version"], timeout=30)).ok:
        return ("docker-compose",)
    raise UnideskError.of(
        ErrorCode.ROLLOUT_FAILED, f"target {session.target.id} has neither `docker compose` nor `docker-compose`"
    )


async def service_container(docker, service: DesiredService, *, provider: bool) -> ContainerFacts | None:
    """The service's container. On a provider whose config.json names a project no container has
    (a stale name), the service's container in whichever project it really runs."""
    ref = compose_ref(service)
    facts = await container_facts(docker, ref)
    if facts is None and provider and ref.project is not None:
        facts = await container_facts(docker, ComposeRef(None, ref.service))
    return facts


async def build_source(ctx, session, config_text: str, name: str) -> BuildSource | None:
    """Context, Dockerfile and target from the running service's `docker compose config`, as paths
    inside the repository (the compose build context must sit in a git checkout on the target);
    None when compose declares no build or it cannot be placed in the repository."""
    declared = build_from_config(config_text, name)
    if declared is None:
        ctx.emit(f"compose_build=none declared for {name}: using config.json build.context/dockerfile (fallback)")
        return None
    top = (
        await session.run(["git", "-C", declared.context, "rev-parse", "--show-toplevel"], timeout=30)
        if is_safe_path(declared.context)
        else None
    )
    root = top.stdout.strip() if top is not None and top.ok else ""
    source = repository_build(declared, root)
    if source is None:
        ctx.emit(
            f"compose_build=context {declared.context} is not inside a git checkout on {ctx.target.id}: using "
            "config.json build.context/dockerfile (fallback)",
            "stderr",
        )
        return None
    ctx.emit(
        f"compose_build=context {source.context} dockerfile {source.dockerfile}"
        + (f" target {source.target}" if source.target else "")
        + " (from docker compose config)"
    )
    return source


async def resolve_step(ctx: StepContext) -> None:
    """Read the compose project, file and image from the target (read-only)."""
    service = ctx.service
    session = await ctx.session()
    docker = await session.docker()
    provider = ctx.target.role == "provider"
    facts = await service_container(docker, service, provider=provider)
    found = compose_identity(service, facts.labels if facts else None, provider=provider)
    project, name, files, workdir = found.project, found.service, found.files, found.workdir
    for note in found.notes:
        ctx.emit(f"compose_resolution: {note}", "stderr" if "stale" in note or "fallback" in note else "stdout")
    command = await compose_command(session)
    env = deploy_env(service.id, service.repo, service.commit, service.requestedCommit)
    probe = ComposeTarget(command, project, name, files, workdir, "")
    res = await session.run(probe.config_argv(), env=env, timeout=60)
    if not res.ok:
        raise _refuse(service, f"`{' '.join(command)} config` failed on {ctx.target.id}: {res.tail(400)}")
    image = image_from_config(res.stdout, name) or (facts.image_ref if facts else None)
    if not image or not is_image_ref(image):
        raise _refuse(
            service, f"compose service {name} declares no usable image ({image!r}); declare `image:` in {files[0]}"
        )
    ms = service.microservice
    if ms and ms.build and ms.build.image and ms.build.image != image:
        ctx.emit(
            f"warning: config.json build.image {ms.build.image} differs from the image compose runs ({image}); "
            f"building {image}",
            "stderr",
        )
    if provider:  # the spec: a provider's build comes from the running service's compose config
        source = await build_source(ctx, session, res.stdout, name)
        if source is not None:
            ctx.shared["build_source"] = source
    ctx.shared["compose"] = ComposeTarget(command, project, name, files, workdir, image)
    ctx.shared["compose_version"] = config_version(res.stdout)
    ctx.shared["image"] = image
    record_restore_point(ctx, facts)
    ctx.emit(f"compose_command={' '.join(command)}")
    ctx.emit(f"compose_project={project} compose_service={name} compose_files={','.join(files)} working_dir={workdir}")
    ctx.emit(
        f"target_image={image}"
        + (f" (running container {facts.name}, {facts.status})" if facts else " (no running container)")
    )


def record_restore_point(ctx: StepContext, facts: ContainerFacts | None) -> None:
    """What runs now (image ID and stamps), to restore if the rollout or verification fails."""
    commit = facts.image_labels.get(LABEL_COMMIT) if facts is not None and facts.running else None
    if facts is None or not facts.running or not commit or not facts.image_id.startswith("sha256:"):
        ctx.emit("restore_point=none (no running container proving a commit: a failure cannot be restored)")
        return
    repo = facts.env.get(ENV_REPO) or facts.image_labels.get(LABEL_REPO) or ctx.service.repo
    requested = facts.env.get(ENV_REQUESTED) or commit
    ctx.shared[RESTORE_POINT] = RestorePoint(commit, repo, requested, facts.image_id, f"container {facts.name}")
    ctx.emit(f"restore_point={commit} image {facts.image_id} (container {facts.name})")


async def _up(ctx: StepContext, session: Any) -> None:
    """Write the deploy-env override for ctx.service, then `up -d --no-build --no-deps --force-recreate`."""
    service = ctx.service
    env = deploy_env(service.id, service.repo, service.commit, service.requestedCommit)
    base: ComposeTarget = ctx.shared["compose"]
    path = override_path(base.files[0], base.service)
    try:
        await write_text(session, path, override_text(base.service, env, ctx.shared.get("compose_version")))
    except RuntimeError as exc:
        raise UnideskError.of(
            ErrorCode.ROLLOUT_FAILED, f"{ctx.target.id}: deploy-env override: {exc}", service=service.id
        ) from None
    ctx.emit(f"compose_deploy_override={path} ({', '.join(env)})")
    compose = replace(base, override=path)
    ctx.emit(f"rollout: {' '.join(compose.up_argv())} ({', '.join(f'{k}={v}' for k, v in env.items())})")
    # The env is still passed: a compose file may interpolate the variables elsewhere (labels, command).
    res = await session.run(
        compose.up_argv(), env=env, timeout=None, on_line=lambda line, stream: ctx.emit(line, stream)
    )  # engine-bounded
    if not res.ok:
        why = "timed out" if res.timed_out else res.tail(600)
        raise UnideskError.of(
            ErrorCode.ROLLOUT_FAILED,
            f"{ctx.target.id}: compose up of {compose.service} failed: {why}",
            service=service.id,
        )
    ctx.emit(f"rollout: {compose.project}/{compose.service} recreated")


async def rollout_step(ctx: StepContext) -> None:
    """`up -d --no-build --no-deps --force-recreate <svc>` with the reconciler's deploy-env override
    beside the service's compose file (the stamps never depend on that file mentioning them)."""
    await _up(ctx, await ctx.session())


async def restore_step(ctx: StepContext) -> None:
    """Point the service's tag back at the image that ran before and recreate it with its stamps
    (ctx.service is the previous deploy here)."""
    point: RestorePoint = ctx.shared[RESTORE_POINT]
    compose: ComposeTarget = ctx.shared["compose"]
    session = await ctx.session()
    tagged = await session.run(["docker", "tag", point.image_id, compose.image], timeout=60)
    if not tagged.ok:
        raise UnideskError.of(
            ErrorCode.ROLLOUT_FAILED,
            f"{ctx.target.id}: cannot tag {point.image_id[:19]} as {compose.image}: {tagged.tail(300)}",
            service=ctx.service.id,
        )
    ctx.emit(f"restore: {compose.image} -> {point.image_id} ({point.commit[:12]}, {point.detail})")
    ctx.shared["image_id"] = point.image_id  # what restore-verify must find running, not the failed build
    await _up(ctx, session)


async def verify_step(ctx: StepContext) -> None:
    compose: ComposeTarget | None = ctx.shared.get("compose")
    ref = ComposeRef(compose.project, compose.service) if compose else compose_ref(ctx.service)
    built = await expected_image_id(ctx)
    await verify_docker(
        ctx,
        ref,
        ctx.catalog.health_url(ctx.service.id, ctx.service.environment),
        health_expected(ctx.catalog, ctx.service),
        built=built,
    )


class ComposeExecutor(Executor):
    """`unidesk-direct` (main server or provider) and `internal-sidecar` (main server, fixed compose
    project): a compose service built on its own target."""

    async def probe(self, session: Any, catalog: Catalog, service: DesiredService) -> Observation:
        docker = await session.docker()
        facts, present, reading = await asyncio.gather(
            service_container(docker, service, provider=session.target.role == "provider"),
            image_present(docker, service.id, service.commit),
            read_health(catalog.health_url(service.id, service.environment)),
        )
        if facts is None:
            return missing(f"no container for compose service {compose_ref(service).service}", reading, {}, present)
        if not facts.running:
            return missing(f"container {facts.name} is {facts.status}", reading, facts.evidence(), present)
        layers = docker_layers(facts.image_labels, facts.env, reading, health_expected(catalog, service))
        obs = observed(layers, service.commit, reading, facts.evidence(), present)
        claimed = obs.live.commit
        if claimed is None:
            return obs
        record = await read_record(session, session.target.workDir, service.id, service.environment, claimed)
        return with_identity(obs, judge(record, facts.image_id, claimed))

    def steps(self, service: DesiredService) -> list[Step]:
        refuse_unisolated(service)
        return [
            Step("resolve-compose", resolve_step, read_only=True),
            Step("proxy-probe", probe_step, read_only=True),
            Step("reuse", reuse_step(("source", "build"))),
            Step("source", source_step),
            Step("build", build_step, limit="build"),
            Step("rollout", rollout_step, limit="rollout", restores=True),
            Step("verify", verify_step, limit="verify", restores=True),
        ]

    def restore_steps(self, service: DesiredService) -> list[Step]:
        return [Step("restore", restore_step, limit="rollout"), Step("restore-verify", verify_step, limit="verify")]
