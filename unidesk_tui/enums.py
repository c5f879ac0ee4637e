"""The vocabulary's names: environments, live states, health, actions, job and step statuses,
outcomes and verification layers, as StrEnums with their order and their terminal/active sets.

Standard library only: `job status`, `job list` and `--help` start without pydantic
(bench/startup.py), and they need these names. `unidesk_tui.model` re-exports every one of them;
import them from there unless a module must start light.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, cast


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
