"""Plan-bound applies: what the operator reviewed is what runs, or nothing runs.

`deploy plan --out FILE` saves the plan with the facts it was decided from, per service: the
desired side (repo, requested and resolved commit, mode, target, the catalog entry's digest, the
manifest's commit in environment mode) and the live side (state, commit, health, image present),
plus a sha256 digest of them. `deploy apply --plan FILE` (and the console's confirmation, which
binds the plan it shows the same way) plans again from the same request, recomputes those facts
and refuses with `plan_stale`, naming each difference, when anything moved. Terraform's saved
plans are the model; here the binding also covers the live runtime.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from unidesk_tui.catalog import Catalog
from unidesk_tui.documents import EnvSourceDoc, PlanDocument, PlanRequest, SavedPlan
from unidesk_tui.errors import ErrorCode, Problem, UnideskError
from unidesk_tui.files import atomic_write

MAX_PLAN_BYTES = 64 * 1024 * 1024


def service_facts(doc: PlanDocument, catalog: Catalog | None) -> dict[str, dict[str, Any]]:
    """service id -> the facts its planned action was decided from."""
    manifest = doc.source.manifestCommit if isinstance(doc.source, EnvSourceDoc) else None
    out: dict[str, dict[str, Any]] = {}
    for item in doc.services:
        ms = catalog.microservice(item.id) if catalog is not None else None
        live = item.live
        out[item.id] = {
            "action": item.action,
            "repo": item.repo,
            "requestedCommit": item.requestedCommit,
            "commit": item.commit,
            "mode": item.mode,
            "target": item.target,
            "manifestCommit": manifest,
            "catalog": hashlib.sha256(ms.model_dump_json().encode()).hexdigest()[:16] if ms is not None else None,
            "live.state": live.state if live else None,
            "live.commit": live.commit if live else None,
            "live.health": live.health if live else None,
            "imagePresent": item.imagePresent,
        }
    return out


def digest(facts: dict[str, dict[str, Any]], workspace: str) -> str:
    canonical = json.dumps({"workspace": workspace, "services": facts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def bind(doc: PlanDocument, catalog: Catalog | None, request: PlanRequest, workspace: Path) -> SavedPlan:
    """The saved plan for a plan document (refused when the plan itself has errors)."""
    if doc.errors or catalog is None:
        raise UnideskError.of(
            ErrorCode.PLAN_INVALID, "a plan with errors cannot be saved for apply; fix them and plan again"
        )
    from unidesk_tui.jobs import now_iso

    facts = service_facts(doc, catalog)
    ws = str(Path(workspace).resolve())
    return SavedPlan(
        createdAt=now_iso(), workspace=ws, request=request, digest=digest(facts, ws), facts=facts, plan=doc
    )


def write(path: Path, saved: SavedPlan) -> None:
    atomic_write(Path(path), (saved.model_dump_json(indent=2) + "\n").encode())


def read(path: Path) -> SavedPlan:
    """A saved plan file; `plan_invalid` when it is missing, not one, or altered."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise UnideskError.of(ErrorCode.PLAN_INVALID, f"cannot read the plan file {path}: {exc.strerror}") from None
    if len(data) > MAX_PLAN_BYTES:
        raise UnideskError.of(ErrorCode.PLAN_INVALID, f"{path} is larger than {MAX_PLAN_BYTES} bytes; not a saved plan")
    try:
        saved = SavedPlan.model_validate_json(data)
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": (), "msg": str(exc)}
        where = ".".join(str(x) for x in first["loc"])
        raise UnideskError.of(
            ErrorCode.PLAN_INVALID,
            f"{path} is not a saved plan (deploy plan --out): {where}: {first['msg']}"[:500],
            path=where or None,
        ) from None
    if digest(saved.facts, saved.workspace) != saved.digest:
        raise UnideskError.of(
            ErrorCode.PLAN_INVALID,
            f"{path}: its digest does not match its contents (the file was edited)",
            path="digest",
        )
    return saved


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return json.dumps(value)


def differences(saved: SavedPlan, now: dict[str, dict[str, Any]], workspace: Path) -> list[Problem]:
    """One `plan_stale` problem per fact that moved since the plan was saved (nothing: [])."""
    problems: list[Problem] = []
    ws = str(Path(workspace).resolve())
    if ws != saved.workspace:
        problems.append(
            Problem(
                ErrorCode.PLAN_STALE, f"the plan was made for workspace {saved.workspace}, not {ws}", path="workspace"
            )
        )
    for sid in sorted(set(saved.facts) | set(now)):
        before, after = saved.facts.get(sid), now.get(sid)
        if before is None or after is None:
            what = "was not in the saved plan" if before is None else "is no longer planned"
            problems.append(Problem(ErrorCode.PLAN_STALE, f"{sid}: {what}", service=sid, path=f"services.{sid}"))
            continue
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                problems.append(
                    Problem(
                        ErrorCode.PLAN_STALE,
                        f"{sid}: {key} was {_show(before.get(key))} when planned, now {_show(after.get(key))}",
                        service=sid,
                        path=f"services.{sid}.{key}",
                    )
                )
    return problems


def check(saved: SavedPlan, doc: PlanDocument, catalog: Catalog | None, workspace: Path) -> None:
    """Raise UnideskError(plan_stale …) naming every difference between `saved` and a fresh plan."""
    problems = differences(saved, service_facts(doc, catalog), workspace)
    if problems:
        raise UnideskError(*problems)
