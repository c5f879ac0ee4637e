"""The one place that maps a `deployment.mode` to its executor.

Adding a mode is one executor module plus one line here. Entries name the class ("module:Class")
and are imported on first use, so looking one mode up loads only that executor's dependencies.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Iterable

from executors.base import Executor
from unidesk_tui.errors import ErrorCode, UnideskError

EXECUTORS: dict[str, str] = {
    "unidesk-direct": "executors.compose:ComposeExecutor",
    "internal-sidecar": "executors.compose:ComposeExecutor",
    "k3sctl-managed": "executors.k3s:K3sExecutor",
    "dev-env-prewarm-images": "executors.prewarm:PrewarmExecutor",
}


def executor_for(mode: str | None) -> Executor:
    """The executor for `mode`; UnideskError(unsupported_service) when no executor handles it."""
    spec = EXECUTORS.get(mode or "")
    if spec is None:
        raise UnideskError.of(ErrorCode.UNSUPPORTED_SERVICE, f"no executor for deployment mode {mode!r}")
    module, _, name = spec.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise TypeError(f"{spec} is not an Executor")
    return cls()


@contextlib.asynccontextmanager
async def shared_reads(health_urls: Iterable[str | None]) -> AsyncIterator[None]:
    """Around one live read of many services: one container/image listing per target daemon and
    one HTTP client for health, whose reads start now (they overlap with connecting to targets)."""
    from executors.docker_probe import shared_listings
    from executors.health import health_client

    with shared_listings():
        async with health_client(list(health_urls)):
            yield
