"""Helpers every executor's steps share: a checked remote command, a quiet context, a coded failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from unidesk_tui.errors import ErrorCode, UnideskError, decisive_line
from unidesk_tui.redact import redact_url

if TYPE_CHECKING:
    from executors.base import StepContext
    from unidesk_tui.catalog import K3sNode
    from unidesk_tui.targets import RunResult


async def run_checked(
    session: Any,
    ctx: StepContext,
    argv: list[str],
    code: ErrorCode,
    what: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> RunResult:
    """Run `argv` on the target, echoing its output to the job log; a failure raises `code`."""
    res = await session.run(argv, env=env, timeout=timeout, on_line=lambda line, stream: ctx.emit(line, stream))
    if not res.ok:
        # git's decisive line (its first fatal:/error:), not its closing advice
        decisive = decisive_line(res.stderr) if ("fatal:" in res.stderr or "error:" in res.stderr) else res.tail(400)
        why = "timed out" if res.timed_out else redact_url(decisive)
        raise UnideskError.of(code, f"{ctx.target.id}: {what} failed: {why}", service=ctx.service.id)
    return res


class QuietContext:
    """A context whose command output is not echoed (a manifest is data, not progress)."""

    def __init__(self, ctx: StepContext) -> None:
        self._ctx = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def emit(self, text: str, stream: str = "stdout") -> None:
        if stream == "stderr":
            self._ctx.emit(text, stream)


def fail(ctx: StepContext, code: ErrorCode, message: str) -> UnideskError:
    """Log `message` on stderr and return the coded error naming the service (for `raise`)."""
    ctx.emit(message, "stderr")
    return UnideskError.of(code, f"{ctx.service.id}: {message}", service=ctx.service.id)


CONFLICT_ATTEMPTS = 5


async def replace_latest(
    live: dict[str, Any],
    read: Callable[[], Awaitable[dict[str, Any]]],
    write: Callable[[dict[str, Any]], Awaitable[Any]],
    body_for: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Replace a Kubernetes object on top of its latest version. The API server refuses (409) a write
    based on an older resourceVersion, and a controller's status writes bump it at any moment, so on
    a conflict read the object again and retry, as kubectl does. Other errors propagate."""
    from kubernetes_asyncio.client.exceptions import ApiException

    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            await write(body_for(live))
            return
        except ApiException as exc:
            if exc.status != 409 or attempt == CONFLICT_ATTEMPTS:
                raise
        await asyncio.sleep(0.05 * attempt)
        live = await read()


def k3s_node(ctx: StepContext) -> K3sNode:
    """The target's native k3s node (targets[].k3s); a target without one fails the step."""
    if ctx.target.k3s is None:
        raise fail(ctx, ErrorCode.ROLLOUT_FAILED, f"target {ctx.target.id} declares no native k3s node (targets[].k3s)")
    return ctx.target.k3s
