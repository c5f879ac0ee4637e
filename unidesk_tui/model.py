"""The shared vocabulary beneath the core and the executors.

What is desired (`DesiredService`), what a live read found (`Observation`, `LiveState`), how a
live reader is called (`LiveReader`), what verification proved (`Check`, `Verification`), and the
names of states and statuses as enums with their order and their terminal/active sets (defined in
`enums`, re-exported here). Nothing here talks to a target; executors and the core both import it,
it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

# The names (enums and their sets) live in `enums`, without pydantic, for the CLI's light paths;
# they are part of this vocabulary and imported from here everywhere else.
from unidesk_tui.enums import (
    APPLY_ENVIRONMENTS,
    FIXED_LAYERS,
    JOB_ACTIVE,
    JOB_TERMINAL,
    NAMED_ENVIRONMENTS,
    PROBE_FAILURES,
    STATE_ORDER,
    STEP_ACTIVE,
    STEP_TERMINAL,
    Action,
    Environment,
    Health,
    JobStatus,
    Layer,
    Outcome,
    State,
    StepStatus,
    environment,
)

if TYPE_CHECKING:
    from unidesk_tui.catalog import Catalog, EnvironmentProfile, K8sObjects, Microservice

__all__ = [
    "APPLY_ENVIRONMENTS",
    "FIXED_LAYERS",
    "JOB_ACTIVE",
    "JOB_TERMINAL",
    "NAMED_ENVIRONMENTS",
    "PROBE_FAILURES",
    "STATE_ORDER",
    "STEP_ACTIVE",
    "STEP_TERMINAL",
    "Action",
    "Check",
    "DesiredService",
    "Environment",
    "Health",
    "JobStatus",
    "Layer",
    "LiveReader",
    "LiveState",
    "Observation",
    "Outcome",
    "State",
    "StepStatus",
    "Verification",
    "check",
    "environment",
]


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
