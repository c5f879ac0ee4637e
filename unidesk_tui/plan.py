"""Desired vs live -> action. Joining the manifest with the catalog, and deciding per service.

"What is desired" (DesiredService), "what is live" (LiveState, read by executors) and "what to
do" (PlanItem) stay separate, typed steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from unidesk_tui.catalog import Catalog, Microservice
from unidesk_tui.documents import PlanItem
from unidesk_tui.errors import ErrorCode, Problem
from unidesk_tui.manifest_source import LoadedManifest
from unidesk_tui.model import Action, DesiredService, Environment, LiveState, State, environment
from unidesk_tui.redact import redact_url


def desired_service(
    catalog: Catalog,
    ms: Microservice,
    service_id: str,
    repo: str,
    requested: str,
    env: Environment,
    commit: str | None = None,
) -> DesiredService:
    """A catalog entry as it is deployed in file mode or in the environment `env`."""
    env = Environment(env)
    deployment, k8s = ms.for_environment(env)
    profile = catalog.environments.get(env.key) if env.key else None
    return DesiredService(
        service_id, repo, requested, ms, deployment.mode, deployment.target, k8s, commit, env, profile
    )


def join(
    loaded: LoadedManifest, catalog: Catalog, only: list[str] | None = None
) -> tuple[list[DesiredService], list[Problem], list[str]]:
    """Join manifest entries with config.json; filter by `only` (unknown ids are problems)."""
    problems: list[Problem] = []
    warnings: list[str] = []
    entries = list(loaded.manifest.services)
    if only:
        listed = {e.id for e in entries}
        for sid in only:
            if sid not in listed:
                problems.append(
                    Problem(ErrorCode.UNKNOWN_SERVICE, f"--service {sid}: not listed in the manifest", service=sid)
                )
        entries = [e for e in entries if e.id in set(only)]
    env = environment(loaded.environment if loaded.source.kind == "env" else None)
    desired = []
    for entry in entries:
        ms = catalog.microservice(entry.id)
        if ms is None:
            problems.append(
                Problem(
                    ErrorCode.UNKNOWN_SERVICE,
                    f"{entry.id}: listed in deploy.json but missing from config.json microservices[]",
                    service=entry.id,
                )
            )
            desired.append(DesiredService(entry.id, entry.repo, entry.commitId, None))
            continue
        if ms.repository and ms.repository.url != entry.repo:
            warnings.append(
                f"{entry.id}: deploy.json repo {redact_url(entry.repo)} differs from config.json repository.url "
                f"{redact_url(ms.repository.url)}; deploy.json wins"
            )
        desired.append(desired_service(catalog, ms, entry.id, entry.repo, entry.commitId, env))
    return desired, problems, warnings


def with_commit(service: DesiredService, commit: str | None) -> DesiredService:
    return replace(service, commit=commit)


def decide(
    service: DesiredService,
    *,
    live: LiveState | None,
    problems: Sequence[Problem] = (),
    force: bool = False,
    env_mode: bool = False,
    apply_enabled: bool | None = None,
    image_present: bool | None = None,
    refusal: Sequence[Problem] = (),
    live_read: bool = False,
) -> PlanItem:
    """The action for one service. `noop` only when the live runtime proves the desired commit.

    In an environment plan, `refusal` is why apply would refuse the service (then applyEnabled is
    false and the reason ends with apply's refusal); with `live_read` and a live state the action
    comes from the environment's runtime, otherwise it is the spec's dry-run plan."""
    if env_mode and refusal:
        apply_enabled = False
    item = PlanItem(
        id=service.id,
        repo=service.repo,
        requestedCommit=service.requestedCommit,
        commit=service.commit,
        mode=service.mode,
        target=service.target,
        live=live,
        action=Action.ERROR,
        reason="",
        imagePresent=image_present,
        applyEnabled=apply_enabled,
    )
    own = [p for p in problems if p.service == service.id]
    if own:
        return item.model_copy(update={"reason": "; ".join(p.message for p in own)})
    ms = service.microservice
    if ms is None or not ms.is_source_built:
        reason = ms.unsupported_reason if ms else "not in config.json"
        return item.model_copy(
            update={"action": Action.UNSUPPORTED, "reason": reason, "applyEnabled": False if env_mode else None}
        )
    short = (service.commit or "")[:12]
    refused = "; apply refused: " + "; ".join(p.message for p in refusal) if env_mode and refusal else ""
    if env_mode and not (live_read and live is not None):
        reason = (
            f"environment dry-run plan: would build {short} on {service.target} ({service.mode}); live runtime not read"
        )
        if refused:
            reason += refused
        elif apply_enabled is False:
            reason += "; environment apply is not enabled for this service"
        return item.model_copy(update={"action": Action.DEPLOY, "reason": reason, "applyEnabled": apply_enabled})
    if refused:
        decided = decide(service, live=live, force=force, image_present=image_present)
        return decided.model_copy(update={"applyEnabled": False, "reason": decided.reason + refused})
    if live is None:
        return item.model_copy(update={"action": Action.DEPLOY, "reason": "live state not read"})
    if live.state == State.UNREACHABLE:
        return item.model_copy(update={"reason": live.message or f"target {service.target} unreachable"})
    if live.state == State.RUNTIME_UNREACHABLE:
        return item.model_copy(
            update={"reason": live.message or f"target {service.target} answers SSH, its runtime does not"}
        )
    if live.state == State.ERROR:
        return item.model_copy(update={"reason": live.message or "live probe failed"})
    if live.state == State.IN_SYNC and live.commit == service.commit:
        if force:
            return item.model_copy(
                update={
                    "action": Action.DEPLOY,
                    "reason": f"--force: rebuild and roll out {short} although it is running",
                }
            )
        return item.model_copy(update={"action": Action.NOOP, "reason": f"running {short} on every layer"})
    reasons = {
        State.DRIFT: f"running {(live.commit or '?')[:12]}, desired {short}",
        State.MISSING: "not running",
        State.PROGRESSING: f"rollout under way ({live.message or 'not every replica is updated'}); desired {short}",
        State.DEGRADED: f"no replica available ({live.message or 'rolled out, none ready'}); desired {short}",
        State.PROVENANCE_MISMATCH: f"runtime layers disagree ({live.message or 'labels, env and health differ'}); "
        f"desired {short}",
        State.IN_SYNC: f"running {(live.commit or '?')[:12]}, desired {short}",
        State.UNSUPPORTED: "runtime not managed by this executor",
    }
    return item.model_copy(update={"action": Action.DEPLOY, "reason": reasons.get(live.state, live.state)})
