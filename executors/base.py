"""The executor interface: how one plan item becomes a running, verified service on its target.

One abstract base, one implementation per `deployment.mode`, looked up in executors/registry.py.
An executor only *describes* work (`steps`) and *reads* the runtime (`probe`, verification); the
job engine (unidesk_tui/engine.py, run by the detached worker) runs the steps, records their events
and verification layers, and owns status and locks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from unidesk_tui.errors import ErrorCode, UnideskError

if TYPE_CHECKING:
    from unidesk_tui.catalog import Catalog, Target
    from unidesk_tui.model import DesiredService, Observation, Verification


class StepContext(Protocol):
    """What a running step may use. Implemented by the job engine."""

    catalog: Catalog
    service: DesiredService  # resolved: `commit` is the full SHA
    target: Target
    dry_run: bool
    force: bool
    shared: dict[str, Any]  # per-service scratch space passed from step to step (e.g. resolved image name)

    def emit(self, text: str, stream: str = "stdout") -> None:
        """Append one event to the job log (secrets are redacted by the engine)."""

    def verified(self, result: Verification) -> None:
        """Record a verification read, layer by layer (the step record keeps the last one)."""

    async def session(self) -> Any:  # the target pool's session for `target` (SSH, docker, kube)
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
    # A failure of this step (a rollout or a verification) restores what ran before the job.
    restores: bool = False


@dataclass(frozen=True)
class RestorePoint:
    """What ran before the job, recorded by a read-only step at its start (ctx.shared RESTORE_POINT)."""

    commit: str
    repo: str
    requestedCommit: str
    image_id: str  # the exact image (sha256:…) to run again
    detail: str = ""


RESTORE_POINT = "restore_point"
SKIP_STEPS = "skip_steps"  # ctx.shared key: step name -> why the engine skips it (e.g. a reused image)


class Executor(ABC):
    # A task (e.g. dev-env prewarm-images) runs for a target, not for a catalog microservice.
    task: ClassVar[bool] = False
    # The job holds a lock on the item's target host while it runs (unidesk_tui/target_locks.py).
    target_lock: ClassVar[bool] = True

    @abstractmethod
    async def probe(self, session: Any, catalog: Catalog, service: DesiredService) -> Observation:
        """Read what really runs for `service` on its target. Never changes anything."""

    @abstractmethod
    def steps(self, service: DesiredService) -> list[Step]:
        """The apply pipeline for `service`, in order, ending with verification."""

    def manifest_objects(self, text: str, service: DesiredService) -> list[dict[str, Any]]:
        """The objects of a Kubernetes manifest as a deploy of `service` applies them (for a diff)."""
        raise UnideskError.of(
            ErrorCode.UNSUPPORTED_SERVICE,
            f"{service.id}: a {service.mode} service has no Kubernetes manifest",
            service=service.id,
        )

    def restore_steps(self, service: DesiredService) -> list[Step]:
        """Steps that put the RestorePoint back after a failed `restores` step, then verify it; the
        engine runs them with `ctx.service` set to the previous deploy. None: no restore."""
        return []
