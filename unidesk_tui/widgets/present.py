"""How states, health, jobs and times are shown: a symbol *and* a colour, readable without colour."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text

from unidesk_tui.documents import JobRecord, PlanItem, StepRecord
from unidesk_tui.model import STATE_ORDER as MODEL_ORDER
from unidesk_tui.model import State

# state -> (symbol, style). Shapes differ so the grid reads without colour; colours are theme
# variables ($name), resolved by `Palette` for the theme in use: green is fine, yellow needs a
# deploy, red is broken, blue is under way, muted is not read.
STATES: dict[str, tuple[str, str]] = {
    "in-sync": ("✓", "$success"),
    "drift": ("≠", "bold $warning"),
    "degraded": ("▼", "$error-lighten-3"),  # rolled out, but no replica is available
    "progressing": ("◐", "bold $primary"),  # a rollout is under way
    "missing": ("∅", "$error"),
    "provenance-mismatch": ("⚠", "bold $error"),
    "runtime-unreachable": ("⊗", "$error"),  # SSH answers, the runtime (docker, k3s API) does not
    "unreachable": ("⊘", "bold $error"),
    "unsupported": ("–", "$foreground-darken-3"),
    "error": ("✗", "bold $error"),
    "planned": ("◇", "$primary"),  # environment dry-run plan: live runtime not read
    "not-read": ("?", "dim"),
}
# Worst first (sorting by state, and the summary line's order): the model's order, with the
# console's own "not read" states before `unsupported`.
STATE_ORDER: tuple[str, ...] = tuple(
    name
    for state in MODEL_ORDER
    for name in ((("planned", "not-read") if state == State.UNSUPPORTED else ()) + (str(state),))
)
HEALTH: dict[str, tuple[str, str]] = {
    "healthy": ("+", "$success"),
    "unhealthy": ("!", "$error"),
    "unknown": ("?", "dim"),
}
JOB_STATUS: dict[str, tuple[str, str]] = {
    "queued": ("…", "$primary"),
    "running": ("▶", "bold $primary"),
    "succeeded": ("✓", "$success"),
    "failed": ("✗", "bold $error"),
    "cancelled": ("■", "$warning"),
    "interrupted": ("↯", "$warning"),
    "pending": ("·", "dim"),
    "skipped": ("»", "dim"),
    "dry-run": ("◇", "$primary"),  # a succeeded dry run: nothing was deployed
}
ACTIONS: dict[str, tuple[str, str]] = {
    "noop": ("=", "$success"),
    "deploy": ("↑", "$warning"),
    "redeploy": ("↻", "$warning"),  # noop, but force rebuilds and rolls out again
    "unsupported": ("–", "$foreground-darken-3"),
    "error": ("✗", "bold $error"),
}
PROD_STYLE = "bold reverse $error"
CHANGED_STYLE = "bold $warning"  # a running commit that differs from the desired one


class Palette:
    """Resolves `$variable` tokens in a style to the current theme's colours (cached per theme)."""

    _cache: dict[str, Palette] = {}

    def __init__(self, variables: dict[str, str]) -> None:
        self.variables = variables
        self._styles: dict[str, str] = {}

    @classmethod
    def of(cls, app: Any) -> Palette:
        """The palette of the app's current theme (plain fallbacks without an app)."""
        name = getattr(getattr(app, "current_theme", None), "name", None) or ""
        palette = cls._cache.get(name)
        if palette is None:
            variables = dict(FALLBACK)
            if app is not None:
                from textual.color import Color

                for key, value in app.get_css_variables().items():
                    try:
                        variables[key] = Color.parse(value).hex
                    except Exception:  # "auto 60%" and the like: not a plain colour
                        continue
            palette = cls._cache[name] = cls(variables)
        return palette

    def style(self, spec: str) -> str:
        out = self._styles.get(spec)
        if out is None:
            out = " ".join(self.variables.get(w[1:], "default") if w.startswith("$") else w for w in spec.split())
            self._styles[spec] = out
        return out

    def text(self, text: str, spec: str = "") -> Text:
        return Text(text, style=self.style(spec))


FALLBACK = {"success": "green", "warning": "yellow", "error": "red", "primary": "blue", "accent": "cyan"}
PLAIN = Palette(FALLBACK)


def label(
    table: dict[str, tuple[str, str]], name: str | None, fallback: str = "?", palette: Palette = PLAIN
) -> tuple[str, str]:
    """(`symbol name`, resolved style): a cell's parts, before any Text is made."""
    name = name or fallback
    symbol, style = table.get(name, ("?", ""))
    return f"{symbol} {name}", palette.style(style)


def labelled(
    table: dict[str, tuple[str, str]], name: str | None, fallback: str = "?", palette: Palette = PLAIN
) -> Text:
    return Text(*label(table, name, fallback, palette))


def summary_text(states: list[str], palette: Palette = PLAIN) -> Text:
    """`✓ 3 in-sync · ≠ 2 drift · ⊘ 1 unreachable`, worst first."""
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    out = Text()
    for state in sorted(counts, key=lambda s: STATE_ORDER.index(s) if s in STATE_ORDER else 99):
        if out:
            out.append(" · ", style="dim")
        symbol, style = STATES.get(state, ("?", ""))
        out.append(f"{symbol} {counts[state]} {state}", style=palette.style(style))
    return out


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
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{int(seconds)}s"
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


def job_shown_status(job: JobRecord) -> str:
    """The status as shown: a succeeded dry run is `dry-run` (it deployed nothing)."""
    return "dry-run" if job.dryRun and job.status == "succeeded" else job.status


def job_when(job: JobRecord) -> float | None:
    """When the job last changed: its end once finished (a cancel counts from the cancel)."""
    return job_ended(job) or job_started(job)


def failed_step(job: JobRecord) -> StepRecord | None:
    return next((s for s in job.steps if s.status == "failed"), None)


def job_reason(job: JobRecord) -> str | None:
    """One line saying why a job did not succeed (None when it did, or still runs)."""
    if job.status in ("succeeded", "queued", "running"):
        return None
    step = failed_step(job)
    if step is not None:
        return f"{step.service} · {step.name}: {step.message or step.code or 'failed'}"
    errors = job.result.errors if job.result else []
    if errors:
        return f"{errors[0].code}: {errors[0].message}"
    return f"job {job.status}"


def last_job_parts(job: JobRecord | None, now: float, palette: Palette = PLAIN) -> tuple[str, str]:
    if job is None:
        return "—", "dim"
    status = job_shown_status(job)
    symbol, style = JOB_STATUS.get(status, ("?", ""))
    step = failed_step(job)
    where = f" at {step.name}" if step is not None else ""
    return f"{symbol} {status}{where} {age_text(job_when(job), now)}", palette.style(style)


def last_job_cell(job: JobRecord | None, now: float, palette: Palette = PLAIN) -> Text:
    return Text(*last_job_parts(job, now, palette))
