"""The shared vocabulary beneath the core and the executors.

What is desired (`DesiredService`), what a live read found (`Observation`, `LiveState`), how a
live reader is called (`LiveReader`), what verification proved (`Check`, `Verification`), and the
names of states and statuses as enums with their order and their terminal/active sets. Nothing
here talks to a target; executors and the core both import it, it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from unidesk_tui.catalog import Catalog, EnvironmentProfile, K8sObjects, Microservice


class Environment(StrEnum):
    """Where a run deploys: the local deploy.json (`file`) or a named environment's manifest."""

    FILE = "file"
    DEV = "dev"
    PROD = "prod"

    @property
    def named(self) -> bool:
        """An environment run (dev, prod), not file mode."""
        return self != Environment.FILE

    @property
    def key(self) -> Literal["dev", "prod"] | None:
        """Its key in config.json's `environments` maps; None in file mode."""
        return cast(Literal["dev", "prod"], self.value) if self.named else None


NAMED_ENVIRONMENTS: tuple[Environment, ...] = (Environment.DEV, Environment.PROD)
APPLY_ENVIRONMENTS: tuple[Environment, ...] = (Environment.DEV,)  # prod apply is refused


def environment(name: str | None) -> Environment:
    """`None` and "file" are file mode; anything else must name an environment (ValueError)."""
    return Environment.FILE if name is None else Environment(name)


class State(StrEnum):
    """The live state of one service, as its runtime proves it."""

    IN_SYNC = "in-sync"
    DRIFT = "drift"
    MISSING = "missing"
    PROVENANCE_MISMATCH = "provenance-mismatch"
    PROGRESSING = "progressing"  # a rollout is under way: not every replica runs the current template yet
    DEGRADED = "degraded"  # rolled out, but no replica is available
    UNREACHABLE = "unreachable"  # the host does not answer SSH
    RUNTIME_UNREACHABLE = "runtime-unreachable"  # SSH answers; the runtime (dockerd, the k3s API) does not
    UNSUPPORTED = "unsupported"
    ERROR = "error"


# Worst first: the order the console sorts by and a summary reads in.
STATE_ORDER: tuple[State, ...] = (
    State.ERROR,
    State.UNREACHABLE,
    State.RUNTIME_UNREACHABLE,
    State.PROVENANCE_MISMATCH,
    State.MISSING,
    State.DEGRADED,
    State.DRIFT,
    State.PROGRESSING,
    State.UNSUPPORTED,
    State.IN_SYNC,
)
# A read that did not reach or could not read the runtime (a problem, not a state of the service).
PROBE_FAILURES: frozenset[State] = frozenset({State.UNREACHABLE, State.RUNTIME_UNREACHABLE, State.ERROR})


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class Action(StrEnum):
    """What a plan does for one service."""

    NOOP = "noop"
    DEPLOY = "deploy"
    UNSUPPORTED = "unsupported"
    ERROR = "error"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


JOB_ACTIVE: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
JOB_TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED}
)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


STEP_ACTIVE: frozenset[StepStatus] = frozenset({StepStatus.PENDING, StepStatus.RUNNING})
STEP_TERMINAL: frozenset[StepStatus] = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)


class Outcome(StrEnum):
    """How one service ended inside a job (job.json `result.services`)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    DRY_RUN = "dry-run"


class LiveState(BaseModel):
    """What the runtime proves about one service (plan items' `live`)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    commit: str | None = Field(None, description="Full SHA the runtime proves, or null")
    state: State
    health: Health = Health.UNKNOWN
    message: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict, description="Labels, env, annotations, health body")


@dataclass(frozen=True)
class DesiredService:
    """One deploy.json entry joined with its catalog entry (None when config.json lacks it)."""

    id: str
    repo: str
    requestedCommit: str
    microservice: Microservice | None
    mode: str | None = None
    target: str | None = None
    k8s: K8sObjects | None = None
    commit: str | None = None  # full SHA, once resolved
    environment: Environment = Environment.FILE
    profile: EnvironmentProfile | None = None  # the environment's profile in an environment run

    @property
    def supported(self) -> bool:
        return self.microservice is not None and self.microservice.is_source_built

    @property
    def image(self) -> str | None:
        """The image this run builds and runs (the environment's own one in an environment run)."""
        return self.microservice.image_for(self.environment) if self.microservice else None


@dataclass(frozen=True)
class Observation:
    """What a live read found for one service: its state and whether the desired image exists."""

    live: LiveState
    imagePresent: bool | None = None

    @classmethod
    def failed(cls, state: State, message: str) -> Observation:
        """`unreachable` or `error`: the target or the probe failed."""
        return cls(LiveState(commit=None, state=state, health=Health.UNKNOWN, message=message), None)


class LiveReader(Protocol):
    """Reads live state for (resolved, supported) services, keyed by service id."""

    def __call__(self, catalog: Catalog, desired: list[DesiredService], /) -> dict[str, Observation]: ...


class Layer(StrEnum):
    """A piece of runtime evidence verification compares with the requested deploy."""

    IMAGE = "image"  # the image's unidesk.ai/* labels, or which image the runtime runs
    ENV = "env"  # the runtime's UNIDESK_DEPLOY_* env
    ANNOTATION = "annotation"  # a Deployment's UNIDESK_DEPLOY_* annotations (or the Deployment itself)
    HEALTH = "health"  # health through the microservice proxy, and its deploy.commit
    RUNTIME = "runtime"  # a running container, a complete rollout
    IDENTITY = (
        "identity"  # the running image ID is the one the reconciler built for the commit (executors/provenance.py)
    )


# Fixed when a container or Deployment is created: waiting cannot change them.
FIXED_LAYERS: frozenset[Layer] = frozenset({Layer.IMAGE, Layer.ENV, Layer.ANNOTATION, Layer.IDENTITY})


@dataclass(frozen=True)
class Check:
    """One comparison: `what` (e.g. "unidesk.ai/source-commit", "dc UNIDESK_DEPLOY_COMMIT") of a layer."""

    layer: Layer
    what: str
    expected: str | None
    actual: str | None
    ok: bool

    def describe(self) -> str:
        if self.ok:
            return f"{self.layer} {self.what} is {self.actual}"
        return f"{self.layer} {self.what} is {self.actual or 'absent'}, expected {self.expected}"


@dataclass(frozen=True)
class Verification:
    """One verification read, check by check."""

    checks: tuple[Check, ...] = ()
    summary: str = ""  # what the proof says when ok (e.g. "running <sha> on image, env, health")

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def settled(self) -> bool:
        """A failure no amount of waiting fixes: a layer fixed at creation disagrees."""
        return any(c.layer in FIXED_LAYERS for c in self.failed)

    @property
    def message(self) -> str:
        if self.ok:
            return self.summary or "; ".join(c.describe() for c in self.checks)
        return "; ".join(c.describe() for c in self.failed)


def check(layer: Layer, what: str, expected: str | None, actual: str | None) -> Check:
    """A check that holds when `actual` equals `expected`."""
    return Check(layer, what, expected, actual, actual == expected)
