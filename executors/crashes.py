"""Containers that exit or crash-loop during a rollout: noticed within seconds and reported with
their exit code and the last lines of their output, instead of waiting out a timeout.

Docker: the container's `State` (not running, or restarting / restarted since it was created).
Kubernetes: the rolled-out pods' `containerStatuses` (terminated, or waiting in CrashLoopBackOff
with the last termination in `lastState`), the output read through the pod log API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unidesk_tui.redact import redact_url

TAIL_LINES = 10
MAX_OUTPUT = 1200
# Waiting reasons that mean the container cannot run as rolled out (no amount of waiting helps).
WAITING_FAILURES = frozenset(
    {
        "CrashLoopBackOff",
        "RunContainerError",
        "CreateContainerError",
        "CreateContainerConfigError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
    }
)


@dataclass(frozen=True)
class Crash:
    """One container that stopped, or cannot start, during a rollout."""

    where: str  # e.g. "container unidesk_backend-core_1", "pod unidesk/dc-7 container app"
    exit_code: int | None
    reason: str  # Docker's status or Kubernetes' reason
    restarts: int = 0
    output: str = ""  # the last lines it printed (stdout and stderr)

    def describe(self) -> str:
        if self.exit_code is not None:
            text = f"{self.where} exited with exit code {self.exit_code} ({self.reason}"
        else:
            text = f"{self.where} cannot run ({self.reason}"
        text += f", {self.restarts} restart{'s' if self.restarts != 1 else ''})" if self.restarts else ")"
        if self.output:
            text += f"; last output: {self.output}"
        return text

    def with_output(self, output: str) -> Crash:
        lines = [line for line in output.replace("\r", "").splitlines() if line.strip()][-TAIL_LINES:]
        text = redact_url(" | ".join(lines))
        return Crash(self.where, self.exit_code, self.reason, self.restarts, text[-MAX_OUTPUT:])


def docker_crash(name: str, state: dict[str, Any], restarts: int) -> Crash | None:
    """A container (created by this rollout) that is not running, or restarting / restarted."""
    status = str(state.get("Status") or "unknown")
    code = state.get("ExitCode")
    code = code if isinstance(code, int) else None
    if state.get("Restarting") or restarts > 0:
        return Crash(
            f"container {name}", code, "restarting: crash loop" if state.get("Restarting") else status, restarts
        )
    if state.get("Running") or status in ("created", "running"):
        return None  # still starting, or running
    return Crash(f"container {name}", code, str(state.get("Error") or status), restarts)


def pod_crashes(pod: dict[str, Any]) -> list[Crash]:
    """Containers of one pod that exited or cannot start (pure)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    where = f"pod {meta.get('namespace')}/{meta.get('name')}"
    out = []
    for cs in status.get("containerStatuses") or []:
        state, last = cs.get("state") or {}, cs.get("lastState") or {}
        restarts = int(cs.get("restartCount") or 0)
        label = f"{where} container {cs.get('name')}"
        terminated = state.get("terminated") or last.get("terminated")
        waiting = state.get("waiting") or {}
        if state.get("terminated"):
            t = state["terminated"]
            out.append(Crash(label, t.get("exitCode"), str(t.get("reason") or "Terminated"), restarts))
        elif waiting.get("reason") in WAITING_FAILURES:
            code = terminated.get("exitCode") if terminated else None
            reason = str(waiting["reason"]) + (
                f": {waiting['message']}" if waiting.get("message") and code is None else ""
            )
            out.append(Crash(label, code, reason, restarts))
        elif restarts and terminated:
            out.append(Crash(label, terminated.get("exitCode"), str(terminated.get("reason") or "restarted"), restarts))
    return out
