"""The executor interface: how one plan item becomes a running, verified service on its target.

One abstract base, one implementation per `deployment.mode`, chosen by name from the registry.
An executor only *describes* work (`steps`) and *reads* the runtime (`probe`, `verify`); the job
engine (unidesk_tui/jobs.py) runs the steps, records their events and owns status and locks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from unidesk_tui.catalog import Catalog, Target
    from unidesk_tui.plan import DesiredService
    from unidesk_tui.reconcile import Observation


class StepContext(Protocol):
    """What a running step may use. Implemented by the job engine."""

    catalog: Catalog
    service: DesiredService  # resolved: `commit` is the full SHA
    target: Target
    dry_run: bool
    force: bool
    shared: dict  # per-service scratch space passed from step to step (e.g. resolved image name)

    def emit(self, text: str, stream: str = "stdout") -> None:
        """Append one event to the job log (secrets are redacted by the engine)."""

    async def session(self):  # -> the target pool's session for `target` (SSH, docker, kube)
        """The open connection to this step's target."""


StepFn = Callable[[StepContext], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    """One named unit of work. It must emit at least one event, or the engine fails the job."""

    name: str
    run: StepFn
    # Steps a dry run still executes because they change nothing (e.g. reading labels).
    read_only: bool = False
    # Which per-service limit (config.json microservices[].timeouts) bounds the step, if any.
    limit: Literal["build", "rollout", "verify"] | None = None


@dataclass
class Verification:
    """The outcome of live verification, layer by layer."""

    ok: bool
    layers: dict[str, str | None] = field(default_factory=dict)  # layer -> commit it shows
    message: str = ""


class Executor(ABC):
    mode: ClassVar[str]
    # A task (e.g. dev-env prewarm-images) runs for a target, not for a catalog microservice.
    task: ClassVar[bool] = False
    # The job holds a lock on the item's target host while it runs (unidesk_tui/target_locks.py).
    target_lock: ClassVar[bool] = True

    @abstractmethod
    async def probe(self, session, catalog: Catalog, service: DesiredService) -> Observation:
        """Read what really runs for `service` on its target. Never changes anything."""

    @abstractmethod
    def steps(self, service: DesiredService) -> list[Step]:
        """The apply pipeline for `service`, in order, ending with verification."""


_REGISTRY: dict[str, type[Executor]] = {}


def register(cls: type[Executor]) -> type[Executor]:
    _REGISTRY[cls.mode] = cls
    return cls


def executor_for(mode: str) -> Executor:
    """The executor for a `deployment.mode` (importing the built-in implementations)."""
    import executors.registry  # noqa: F401  (registers built-ins)

    try:
        return _REGISTRY[mode]()
    except KeyError:
        raise KeyError(f"no executor for deployment mode {mode!r}") from None
