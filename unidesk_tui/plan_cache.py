"""The last check result per (workspace, environment), kept under `<state>/cache/` so the console
can paint its grid at once (marked stale) while the first real refresh runs.

Headless: no textual, no rich. Writes are atomic (temp file, fsync, rename); a missing, unreadable
or outdated cache file is simply no cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from unidesk_tui.documents import PlanDocument
from unidesk_tui.files import atomic_write
from unidesk_tui.model import Environment

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass(frozen=True)
class CachedPlan:
    """A plan document as it was at `refreshed_at` (epoch seconds), and how long it took."""

    document: PlanDocument
    refreshed_at: float
    duration_s: float


def cache_path(state_dir: Path, workspace: Path, environment: Environment) -> Path:
    key = hashlib.sha256(str(Path(workspace).resolve()).encode()).hexdigest()[:16]
    return Path(state_dir) / "cache" / f"plan-{key}-{environment.value}.json"


def save(state_dir: Path, workspace: Path, environment: Environment, cached: CachedPlan) -> Path:
    path = cache_path(state_dir, workspace, environment)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "version": CACHE_VERSION,
        "workspace": str(Path(workspace).resolve()),
        "environment": environment.value,
        "refreshedAt": cached.refreshed_at,
        "durationS": cached.duration_s,
        "document": cached.document.model_dump(mode="json"),
    }
    atomic_write(path, json.dumps(body).encode())
    return path


def load(state_dir: Path, workspace: Path, environment: Environment) -> CachedPlan | None:
    path = cache_path(state_dir, workspace, environment)
    try:
        body = json.loads(path.read_text())
        if body.get("version") != CACHE_VERSION:
            return None
        return CachedPlan(
            PlanDocument.model_validate(body["document"]), float(body["refreshedAt"]), float(body["durationS"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
        log.warning("ignoring unreadable plan cache %s: %s", path, exc)
        return None
