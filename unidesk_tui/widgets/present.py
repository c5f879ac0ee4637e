"""How states, health, jobs and times are shown: a symbol *and* a colour, readable without colour."""

from __future__ import annotations

import logging
import time
from typing import Any

from rich.text import Text

from unidesk_tui.documents import JobRecord, PlanItem, StepRecord

log = logging.getLogger(__name__)

# state -> (symbol, style). Symbols differ in shape so the grid reads in monochrome too.
STATES: dict[str, tuple[str, str]] = {
    "in-sync": ("✓", "green"),
    "drift": ("≠", "yellow"),
    "missing": ("∅", "red"),
    "provenance-mismatch": ("⚠", "magenta"),
    "unreachable": ("⊘", "bold red"),
    "unsupported": ("–", "dim"),
    "error": ("✗", "bold red"),
    "planned": ("◇", "cyan"),  # environment dry-run plan: live runtime not read
    "not-read": ("?", "dim"),
}
HEALTH: dict[str, tuple[str, str]] = {
    "healthy": ("+", "green"),
    "unhealthy": ("!", "red"),
    "unknown": ("?", "dim"),
}
JOB_STATUS: dict[str, tuple[str, str]] = {
    "queued": ("…", "cyan"),
    "running": ("▶", "bold cyan"),
    "succeeded": ("✓", "green"),
    "failed": ("✗", "bold red"),
    "cancelled": ("■", "yellow"),
    "interrupted": ("↯", "yellow"),
    "pending": ("·", "dim"),
    "skipped": ("»", "dim"),
}
ACTIONS: dict[str, tuple[str, str]] = {
    "noop": ("=", "green"),
    "deploy": ("↑", "yellow"),
    "unsupported": ("–", "dim"),
    "error": ("✗", "bold red"),
}


def labelled(table: dict[str, tuple[str, str]], name: str | None, fallback: str = "?") -> Text:
    name = name or fallback
    symbol, style = table.get(name, ("?", ""))
    return Text(f"{symbol} {name}", style=style)


def row_state(item: PlanItem, env_mode: bool) -> str:
    """The grid's state for one plan item (the live state when it was read)."""
    if item.action == "error" and (item.live is None or item.live.state not in ("unreachable", "error")):
        return "error"
    if item.live is not None:
        return item.live.state
    if item.action == "unsupported":
        return "unsupported"
    return "planned" if env_mode else "not-read"


def short(sha: str | None, n: int = 7) -> str:
    return sha[:n] if sha else "—"


def clock_text(epoch: float) -> str:
    """Wall-clock time in UTC: stable in snapshots whatever the machine's zone."""
    return time.strftime("%H:%M:%S UTC", time.gmtime(epoch))


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def age_text(then: float | None, now: float) -> str:
    if then is None:
        return "—"
    delta = max(0.0, now - then)
    if delta < 60:
        return f"{int(delta)}s ago"
    if delta < 3600:
        return f"{int(delta // 60)}m ago"
    if delta < 86400:
        return f"{int(delta // 3600)}h ago"
    return f"{int(delta // 86400)}d ago"


def parse_ts(value: Any) -> float | None:
    """Epoch seconds from a job timestamp (epoch number or ISO 8601 text)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        from datetime import datetime

        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def job_started(job: JobRecord) -> float | None:
    return parse_ts(job.startedAt or job.createdAt)


def job_ended(job: JobRecord) -> float | None:
    return parse_ts(job.endedAt)


def step_seconds(step: StepRecord, now: float) -> float | None:
    if step.durationMs is not None:
        return step.durationMs / 1000
    start = parse_ts(step.startedAt)
    if start is None:
        return None
    end = parse_ts(step.endedAt)
    return (end if end is not None else now) - start


def last_job_cell(job: JobRecord | None, now: float) -> Text:
    if job is None:
        return Text("—", style="dim")
    status = job.status
    symbol, style = JOB_STATUS.get(status, ("?", ""))
    return Text(f"{symbol} {status} {age_text(job_started(job), now)}", style=style)
