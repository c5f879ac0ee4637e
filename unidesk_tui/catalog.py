"""`config.json`: the catalog of targets, environment profiles and microservices.

Everything deploy.json may not say (hosts, paths, modes, build inputs, health, compose and k8s
objects) is declared here. Host paths default to the specification's and are all overridable.
`repository.commitId` is kept for catalog compatibility only; deploy.json is the version authority.
"""

from __future__ import annotations

import hashlib
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from unidesk_tui.errors import ErrorCode, Problem, UnideskError
from unidesk_tui.identifiers import (
    is_image_ref,
    is_plain_name,
    is_relative_repo_path,
    is_repo_url,
    is_safe_path,
    is_service_id,
    is_target_id,
)
from unidesk_tui.json_input import load_json
from unidesk_tui.model import Environment
from unidesk_tui.redact import redact_url

DeploymentMode = Literal["unidesk-direct", "internal-sidecar", "k3sctl-managed"]
COMPOSE_MODES: tuple[str, ...] = ("unidesk-direct", "internal-sidecar")
# Services the specification names. k3sctl-adapter is UniDesk's bridge to native k3s, needed to
# inspect and repair it, so it must stay outside k3s; Decision Center runs only inside k3s. The
# catalog fields `controlBridge` and `k3sOnly` mark other services, or override these defaults.
CONTROL_BRIDGES: frozenset[str] = frozenset({"k3sctl-adapter"})
K3S_ONLY: frozenset[str] = frozenset({"decision-center"})
# Step limits in seconds when config.json gives none. Code Queue carries the agent toolchain and
# browser runtime, so the spec gives its build a longer window than lightweight services.
DEFAULT_TIMEOUTS: dict[str, int] = {"build": 1200, "rollout": 300, "verify": 120}
LONG_BUILDS: dict[str, int] = {"code-queue": 3600}


def _check(pred, what: str):
    def inner(value):
        if value is not None and not pred(value):
            raise ValueError(f"{redact_url(repr(value))} is not {what}")
        return value

    return AfterValidator(inner)


ServiceId = Annotated[str, _check(is_service_id, "a DNS-label-like service id")]
TargetId = Annotated[str, _check(is_target_id, "a target id (letters, digits, '.', '_', '-')")]
RepoUrl = Annotated[str, _check(is_repo_url, "a repository URL")]
HostPath = Annotated[str, _check(lambda v: is_safe_path(v) and v.startswith("/"), "an absolute path")]
RepoPath = Annotated[str, _check(is_relative_repo_path, "a relative path inside the repository")]
ImageRef = Annotated[str, _check(is_image_ref, "an image reference")]
PlainName = Annotated[str, _check(is_plain_name, "a plain name")]
# A fully qualified image reference for `ctr images pull`: registry host (a domain, or host:port) first.
PULL_REF_RE = re.compile(
    r"^(?:localhost|[a-z0-9]([a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+)(?::[0-9]{1,5})?"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
PullRef = Annotated[
    str,
    _check(
        lambda v: isinstance(v, str) and bool(PULL_REF_RE.fullmatch(v)),
        "a fully qualified image reference (registry/name[:tag])",
    ),
]
ProxyUrl = Annotated[
    str,
    _check(
        lambda v: v.startswith(("http://", "https://")) and is_repo_url(v), "an http(s) proxy URL without credentials"
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshEndpoint(_Model):
    host: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]*$")
    port: int = Field(22, ge=1, le=65535)
    user: str = Field("root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    identityFile: HostPath | None = None
    knownHosts: HostPath | None = None


class DockerEndpoint(_Model):
    socket: HostPath = "/var/run/docker.sock"


class K3sNode(_Model):
    kubeconfig: HostPath = "/etc/rancher/k3s/k3s.yaml"
    containerdSocket: HostPath = "/run/k3s/containerd/containerd.sock"
    containerdNamespace: PlainName = "k8s.io"
    # The pod sandbox image, preloaded through the node's egress proxy and checked to run /pause.
    pauseImage: PullRef = "docker.io/rancher/mirrored-pause:3.6"
    registryPlainHttp: bool = False  # pull pauseImage over plain HTTP (a private registry without TLS)


class Target(_Model):
    """A host that builds and runs services: the main server or a provider node."""

    id: TargetId
    role: Literal["main", "provider"] = "provider"
    ssh: SshEndpoint
    providerId: PlainName | None = None
    egressProxy: ProxyUrl | None = None
    docker: DockerEndpoint = DockerEndpoint()
    k3s: K3sNode | None = None
    workDir: HostPath = "/var/lib/unidesk-deploy"


class Database(_Model):
    """Where an environment's database lives; credentials never appear in config.json."""

    host: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    port: int = Field(5432, ge=1, le=65535)
    name: PlainName

    def fingerprint(self) -> str:
        """Stable short hash of host/port/name: tells two databases apart without exposing them."""
        return hashlib.sha256(f"{self.host}:{self.port}/{self.name}".encode()).hexdigest()[:12]


class EnvironmentProfile(_Model):
    namespace: ServiceId
    providerId: PlainName
    target: TargetId
    database: Database
    applyEnabled: tuple[ServiceId, ...] = ()
    # The environment's own microservice proxy: environment jobs read health only here.
    microserviceProxy: dict[Literal["url"], ProxyUrl] | None = None


class Repository(_Model):
    url: RepoUrl
    commitId: str | None = None  # catalog only; never deploy authority


class Deployment(_Model):
    mode: DeploymentMode
    target: TargetId


class Build(_Model):
    dockerfile: RepoPath = "Dockerfile"
    context: RepoPath = "."
    image: ImageRef | None = None
    baseImageArg: PlainName | None = None
    requiresProxy: bool = False


class Health(_Model):
    path: str = Field("/health", pattern=r"^/[A-Za-z0-9._/~-]*$")
    port: int | None = Field(None, ge=1, le=65535)
    exposesDeployCommit: bool = True


class Compose(_Model):
    project: PlainName
    service: PlainName
    file: HostPath | None = None


class K8sObjects(_Model):
    manifest: RepoPath
    namespace: ServiceId
    deployments: tuple[ServiceId, ...]
    services: tuple[ServiceId, ...] = ()


class EnvironmentBuild(_Model):
    image: ImageRef  # the environment's own tag (e.g. unidesk-code-queue:dev), never the production one


class EnvironmentOverride(_Model):
    deployment: Deployment | None = None
    k8s: K8sObjects | None = None
    build: EnvironmentBuild | None = None


class Timeouts(_Model):
    """Per-service step limits in seconds; null takes the default (DEFAULT_TIMEOUTS, LONG_BUILDS)."""

    build: int | None = Field(None, ge=1, le=86400)
    rollout: int | None = Field(None, ge=1, le=86400)
    verify: int | None = Field(None, ge=1, le=86400)


class Microservice(_Model):
    """A catalog entry. Either a source-built service (`repository` + `build`) or image-only."""

    id: ServiceId
    repository: Repository | None = None
    deployment: Deployment
    build: Build | None = None
    image: ImageRef | None = None
    health: Health = Health()
    compose: Compose | None = None
    k8s: K8sObjects | None = None
    environments: dict[Literal["dev", "prod"], EnvironmentOverride] = {}
    controlBridge: bool | None = None  # null: true for the CONTROL_BRIDGES ids
    k3sOnly: bool | None = None  # null: true for the K3S_ONLY ids
    timeouts: Timeouts = Timeouts()

    @model_validator(mode="after")
    def _mode_needs_objects(self) -> Microservice:
        if self.is_source_built:
            if self.deployment.mode == "k3sctl-managed" and self.k8s is None:
                raise ValueError("k3sctl-managed services need `k8s`")
        return self

    @property
    def is_control_bridge(self) -> bool:
        """A bridge UniDesk needs to inspect or repair an orchestrator: it runs in a direct compose mode."""
        return self.controlBridge if self.controlBridge is not None else self.id in CONTROL_BRIDGES

    def timeout(self, kind: Literal["build", "rollout", "verify"]) -> int:
        """The limit for this service's `kind` steps, in seconds."""
        own = getattr(self.timeouts, kind)
        if own is not None:
            return own
        return LONG_BUILDS.get(self.id, DEFAULT_TIMEOUTS[kind]) if kind == "build" else DEFAULT_TIMEOUTS[kind]

    @property
    def is_k3s_only(self) -> bool:
        """A service that runs only inside k3s: no compose declaration, nothing exposed on the node."""
        return self.k3sOnly if self.k3sOnly is not None else self.id in K3S_ONLY

    def deployments(self) -> list[tuple[str, Deployment]]:
        """(JSON path below the entry, deployment) of the base deployment and every environment's own."""
        own = [(f"environments.{env}.deployment", o.deployment) for env, o in self.environments.items() if o.deployment]
        return [("deployment", self.deployment), *own]

    @property
    def is_source_built(self) -> bool:
        """True when the service has a Dockerfile source artifact the reconciler can build."""
        return self.repository is not None and self.build is not None

    @property
    def unsupported_reason(self) -> str | None:
        if self.is_source_built:
            return None
        if self.image:
            return (
                f"image-only service ({self.image}) has no Dockerfile source artifact; wrap it in a source "
                "repository with a Dockerfile"
            )
        return "no Dockerfile source artifact (needs `repository` and `build` in config.json)"

    def for_environment(self, env: Environment) -> tuple[Deployment, K8sObjects | None]:
        """The deployment and k8s objects in effect for a file-mode or environment run."""
        key = Environment(env).key
        override = self.environments.get(key) if key else None
        if override is None:
            return self.deployment, self.k8s
        return override.deployment or self.deployment, override.k8s or self.k8s

    def image_for(self, env: Environment) -> str | None:
        """The image built and run in a file-mode or environment run (the base one when the
        environment declares none: environment apply refuses that)."""
        key = Environment(env).key
        override = self.environments.get(key) if key else None
        if override is not None and override.build is not None:
            return override.build.image
        return self.build.image if self.build else None


class JobRetention(_Model):
    """How much of the job store is kept: finished jobs beyond `keepFinished` are removed when a
    job starts (running ones never); an event log beyond `maxLogBytes` keeps its head and tail."""

    keepFinished: int = Field(100, ge=1, le=100000)  # = jobs.DEFAULT_KEEP_FINISHED
    maxLogBytes: int = Field(8 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)  # = jobs.DEFAULT_MAX_LOG_BYTES


class Catalog(_Model):
    """A validated config.json."""

    schemaVersion: Literal[1] = 1
    targets: tuple[Target, ...]
    microserviceProxy: dict[Literal["url"], ProxyUrl] | None = None
    environments: dict[Literal["dev", "prod"], EnvironmentProfile] = {}
    microservices: tuple[Microservice, ...]
    jobs: JobRetention = JobRetention()

    @model_validator(mode="after")
    def _references(self) -> Catalog:
        targets = {t.id for t in self.targets}
        if len(targets) != len(self.targets):
            raise ValueError("target ids must be unique")
        ids = [m.id for m in self.microservices]
        if len(set(ids)) != len(ids):
            raise ValueError("microservice ids must be unique")
        for m in self.microservices:
            deployments = [m.deployment] + [o.deployment for o in m.environments.values() if o.deployment]
            for d in deployments:
                if d.target not in targets:
                    raise ValueError(f"microservice {m.id!r}: unknown target {d.target!r}")
        for name, env in self.environments.items():
            if env.target not in targets:
                raise ValueError(f"environments.{name}: unknown target {env.target!r}")
        return self

    def target(self, target_id: str) -> Target:
        return next(t for t in self.targets if t.id == target_id)

    def microservice(self, service_id: str) -> Microservice | None:
        return self._microservice_index.get(service_id)

    @cached_property
    def _microservice_index(self) -> dict[str, Microservice]:
        """By id: a plan looks every service up, and must stay linear (issue 13)."""
        return {m.id: m for m in self.microservices}

    def health_url(self, service_id: str, env: Environment = Environment.FILE) -> str | None:
        """The health endpoint through the UniDesk microservice proxy, as the frontend uses it: the
        top-level proxy in file mode, only the environment's own proxy for an environment."""
        key = Environment(env).key
        if key:
            profile = self.environments.get(key)
            proxy = profile.microserviceProxy if profile else None
        else:
            proxy = self.microserviceProxy
        if not proxy:
            return None
        return f"{proxy['url'].rstrip('/')}/api/microservices/{service_id}/health"


def policy_problems(catalog: Catalog) -> list[Problem]:
    """Rules across fields, each reported at its JSON path: a control bridge never runs in k3s."""
    problems: list[Problem] = []
    for index, ms in enumerate(catalog.microservices):
        base = f"microservices[{index}]"
        if not ms.is_control_bridge:
            continue
        if ms.is_k3s_only:
            path = f"{base}.k3sOnly"
            why = f"{path}: {ms.id} is a control bridge, which stays outside k3s; it cannot also be k3s-only"
            problems.append(Problem(ErrorCode.CONFIG_INVALID, why, service=ms.id, path=path))
        for where, deployment in ms.deployments():
            if deployment.mode in COMPOSE_MODES:
                continue
            path = f"{base}.{where}.mode"
            problems.append(
                Problem(
                    ErrorCode.CONFIG_INVALID,
                    f"{path}: {ms.id} is a control bridge (controlBridge) UniDesk needs to inspect and repair k3s, "
                    f"so it must remain outside k3s in a direct compose mode ({' or '.join(COMPOSE_MODES)}), not "
                    f"{deployment.mode}",
                    service=ms.id,
                    path=path,
                )
            )
    return problems


def _pydantic_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "literal[", "tagged-union")):
            out += f".{part}" if out else part
    return out or "$"


def parse_catalog(data: str | bytes, origin: str = "config.json") -> Catalog:
    doc = load_json(data, origin=origin, code=ErrorCode.CONFIG_INVALID)
    try:
        catalog = Catalog.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = _pydantic_path(tuple(err["loc"]))
            problems.append(Problem(ErrorCode.CONFIG_INVALID, f"{origin}: {path}: {err['msg']}", path=path))
        raise UnideskError(*problems) from None
    policy = policy_problems(catalog)
    if policy:
        raise UnideskError(*(Problem(p.code, f"{origin}: {p.message}", service=p.service, path=p.path) for p in policy))
    return catalog


def load_catalog(path: str | Path) -> Catalog:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnideskError.of(ErrorCode.CONFIG_NOT_FOUND, f"config.json not found at {path}") from None
    except OSError as exc:
        raise UnideskError.of(ErrorCode.CONFIG_INVALID, f"cannot read {path}: {exc.strerror}") from None
    return parse_catalog(data, origin=str(path))
