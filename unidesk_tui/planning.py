"""The planning run behind check / plan: load the manifest, join it with the catalog, resolve
commits, read live state, decide. The CLI and the console both call `run_plan`; neither re-implements it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unidesk_tui.catalog import Catalog
from unidesk_tui.documents import EnvironmentPlan, EnvSourceDoc, FileSourceDoc, PlanDocument, to_errors
from unidesk_tui.errors import ErrorCode, ExitCode, Problem, UnideskError
from unidesk_tui.isolation import apply_refusal, isolation_problems
from unidesk_tui.manifest_source import EnvSource, LoadedManifest, load_env, load_file
from unidesk_tui.model import (
    PROBE_FAILURES,
    Action,
    DesiredService,
    Environment,
    LiveReader,
    LiveState,
    Observation,
    State,
)
from unidesk_tui.plan import decide, join, with_commit
from unidesk_tui.resolve import Resolver, resolve_many
from unidesk_tui.workspace import Workspace


@dataclass
class PlanRun:
    """Everything a plan produced, for callers that go on to apply it."""

    document: PlanDocument
    desired: list[DesiredService]
    catalog: Catalog | None
    loaded: LoadedManifest | None


def load_source(ws: Workspace, file: str | Path | None, env: str | None) -> LoadedManifest:
    if env:
        return load_env(ws.root, env)
    return load_file(Path(file) if file else ws.manifest_path)


def environment_plan(catalog: Catalog, name: str) -> EnvironmentPlan:
    environment = Environment(name).key
    profile = catalog.environments.get(environment) if environment else None
    if environment is None or profile is None:
        raise UnideskError.of(
            ErrorCode.CONFIG_INVALID,
            f"config.json has no environments.{environment} profile",
            path=f"environments.{environment}",
        )
    return EnvironmentPlan(
        environment=environment,
        namespace=profile.namespace,
        providerId=profile.providerId,
        target=profile.target,
        databaseName=profile.database.name,
        databaseFingerprint=profile.database.fingerprint(),
    )


def run_plan(
    ws: Workspace,
    command: Literal["check", "plan"],
    *,
    file: str | Path | None = None,
    env: str | None = None,
    services: list[str] | None = None,
    force: bool = False,
    read_live: LiveReader | None = None,
    gate: Callable[[list[str]], list[Problem]] | None = None,
) -> PlanRun:
    """Build the check/plan document. Coded failures become `errors`; nothing is raised.

    `gate` sees the selected service ids before any fetch or live read; problems it returns end the
    run there (apply refuses a held lock in milliseconds, not after a full plan).
    """
    doc = PlanDocument(ok=False, command=command)
    try:
        loaded = load_source(ws, file, env)
        catalog = ws.catalog()
    except UnideskError as exc:
        doc.errors = to_errors(exc.problems)
        return PlanRun(doc, [], None, None)
    src = loaded.source
    if isinstance(src, EnvSource):
        keys = ("environment", "ref", "manifestCommit", "manifestBlob")
        doc.source = EnvSourceDoc(**{k: getattr(src, k) for k in keys})
    else:
        declared = Environment(src.declaredEnvironment).key if src.declaredEnvironment else None
        doc.source = FileSourceDoc(
            path=src.path, declaredEnvironment=declared, legacyProductionPath=src.legacyProductionPath
        )
    doc.warnings = list(loaded.warnings)
    problems: list[Problem] = []
    env_mode = isinstance(src, EnvSource)
    enabled: set[str] = set()
    if isinstance(src, EnvSource):
        try:
            doc.environment = environment_plan(catalog, src.environment)
            enabled = set(catalog.environments[doc.environment.environment].applyEnabled)
        except UnideskError as exc:
            problems.extend(exc.problems)

    desired, join_problems, join_warnings = join(loaded, catalog, services)
    if gate is not None and (refused := gate([d.id for d in desired])):
        doc.errors = to_errors(refused)
        return PlanRun(doc, [], None, loaded)
    problems += join_problems
    doc.warnings += join_warnings
    resolved, resolve_problems = resolve_many(
        Resolver(ws.state_dir), [(d.id, d.repo, d.requestedCommit) for d in desired if d.microservice is not None]
    )
    problems += resolve_problems
    desired = [with_commit(d, resolved.get(d.id)) for d in desired]

    observations: dict[str, Observation] = {}
    # an environment is read only where the service's environment objects are its own (never production's)
    live_candidates = [d for d in desired if d.commit and d.supported and not isolation_problems(d)]
    if read_live is not None and live_candidates:
        observations = read_live(catalog, live_candidates)
        for sid, obs in observations.items():
            if obs.live.state in PROBE_FAILURES:
                code = ErrorCode.TARGET_UNREACHABLE if obs.live.state == State.UNREACHABLE else ErrorCode.PROBE_FAILED
                problems.append(Problem(code, f"{sid}: {obs.live.message or obs.live.state}", service=sid))
        if env_mode:  # an environment whose runtime could not be read stays the dry-run plan (errors say why)
            observations = {sid: o for sid, o in observations.items() if o.live.state not in PROBE_FAILURES}

    # Indexed by service: each decision sees only its own problems (a plan stays linear, issue 13).
    by_service: dict[str | None, list[Problem]] = {}
    for p in problems:
        if p.code not in (ErrorCode.TARGET_UNREACHABLE, ErrorCode.PROBE_FAILED):
            by_service.setdefault(p.service, []).append(p)
    for d in desired:
        found = observations.get(d.id)
        live = found.live if found else None
        if live is None and read_live is not None and d.microservice is not None and not d.supported:
            live = LiveState(state=State.UNSUPPORTED, message=d.microservice.unsupported_reason)
        doc.services.append(
            decide(
                d,
                live=live,
                problems=by_service.get(d.id, []),
                force=force,
                env_mode=env_mode,
                apply_enabled=(d.id in enabled) if env_mode else None,
                image_present=found.imagePresent if found else None,
                refusal=apply_refusal(d, enabled, only=bool(services)) if env_mode else [],
                live_read=read_live is not None,
            )
        )
    doc.errors = to_errors(problems)
    doc.ok = not problems
    return PlanRun(doc, desired, catalog, loaded)


def exit_code(doc: PlanDocument) -> ExitCode:
    if doc.errors:
        return ExitCode.ERROR
    if any(s.action in (Action.DEPLOY, Action.UNSUPPORTED) for s in doc.services):
        return ExitCode.WORK_TO_DO
    return ExitCode.OK
