"""Desired vs live -> action. Joining the manifest with the catalog, and deciding per service.

"What is desired" (DesiredService), "what is live" (LiveState, read by executors) and "what to
do" (PlanItem) stay separate, typed steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from unidesk_tui.catalog import Catalog, EnvironmentProfile, K8sObjects, Microservice
from unidesk_tui.documents import LiveState, PlanItem
from unidesk_tui.errors import ErrorCode, Problem
from unidesk_tui.identifiers import same_image
from unidesk_tui.redact import redact_url
from unidesk_tui.source import LoadedManifest


@dataclass(frozen=True)
class DesiredService:
    """One deploy.json entry joined with its catalog entry (None when config.json lacks it)."""

    id: str
    repo: str
    requestedCommit: str
    microservice: Microservice | None
    mode: str | None = None
    target: str | None = None
    k8s: K8sObjects | None = None
    commit: str | None = None  # full SHA, once resolved
    environment: str | None = None  # the environment of an environment run; None in file mode
    profile: EnvironmentProfile | None = None  # that environment's profile

    @property
    def supported(self) -> bool:
        return self.microservice is not None and self.microservice.is_source_built

    @property
    def image(self) -> str | None:
        """The image this run builds and runs (the environment's own one in an environment run)."""
        return self.microservice.image_for(self.environment) if self.microservice else None


def desired_service(catalog: Catalog, ms: Microservice, service_id: str, repo: str, requested: str,
                    environment: str | None, commit: str | None = None) -> DesiredService:
    """A catalog entry as it is deployed in file mode (environment None) or in `environment`."""
    deployment, k8s = ms.for_environment(environment)
    profile = catalog.environments.get(environment) if environment else None
    return DesiredService(service_id, repo, requested, ms, deployment.mode, deployment.target, k8s, commit, environment, profile)


def isolation_problems(service: DesiredService) -> list[Problem]:
    """Why an environment run of `service` could touch production (nothing in file mode).

    It needs the service's own `environments.<env>` override, k3sctl-managed, whose k8s namespace
    and target are the profile's, and an environment image distinct from every other run's image.
    """
    env, ms = service.environment, service.microservice
    if env is None or ms is None:
        return []
    where = f"config.json microservices[{service.id}].environments.{env}"
    problems: list[str] = []
    override = ms.environments.get(env)
    profile = service.profile
    if profile is None:
        problems.append(f"config.json declares no environments.{env} profile")
    if override is None:
        problems.append(f"{where} is not declared: an {env} apply would run the production deployment")
    else:
        if service.mode != "k3sctl-managed":
            problems.append(f"{where}: environment apply runs k3sctl-managed services only, not {service.mode}")
        if override.k8s is None:
            problems.append(f"{where}.k8s is not declared: an {env} apply would use the production objects")
        elif profile is not None and override.k8s.namespace != profile.namespace:
            problems.append(f"{where}.k8s.namespace is {override.k8s.namespace!r}, environments.{env}.namespace is {profile.namespace!r}")
        if profile is not None and service.target != profile.target:
            problems.append(f"{where}: deployment target {service.target!r} is not environments.{env}.target {profile.target!r}")
        image = override.build.image if override.build else None
        others = {ms.build.image if ms.build else None} | {o.build.image for e, o in ms.environments.items() if e != env and o.build}
        if image is None:
            problems.append(f"{where}.build.image is not declared: an {env} build would replace the production image")
        elif any(same_image(image, o) for o in others):
            problems.append(f"{where}.build.image {image} is the image another environment runs")
    return [Problem(ErrorCode.ENVIRONMENT_ISOLATION, f"{service.id}: {p}", service=service.id) for p in problems]


def join(loaded: LoadedManifest, catalog: Catalog, only: list[str] | None = None) -> tuple[list[DesiredService], list[Problem], list[str]]:
    """Join manifest entries with config.json; filter by `only` (unknown ids are problems)."""
    problems: list[Problem] = []
    warnings: list[str] = []
    entries = list(loaded.manifest.services)
    if only:
        listed = {e.id for e in entries}
        for sid in only:
            if sid not in listed:
                problems.append(Problem(ErrorCode.UNKNOWN_SERVICE, f"--service {sid}: not listed in the manifest", service=sid))
        entries = [e for e in entries if e.id in set(only)]
    env = loaded.environment if loaded.source.kind == "env" else None
    desired = []
    for entry in entries:
        ms = catalog.microservice(entry.id)
        if ms is None:
            problems.append(Problem(ErrorCode.UNKNOWN_SERVICE, f"{entry.id}: listed in deploy.json but missing from config.json microservices[]", service=entry.id))
            desired.append(DesiredService(entry.id, entry.repo, entry.commitId, None))
            continue
        if ms.repository and ms.repository.url != entry.repo:
            warnings.append(f"{entry.id}: deploy.json repo {redact_url(entry.repo)} differs from config.json repository.url {redact_url(ms.repository.url)}; deploy.json wins")
        desired.append(desired_service(catalog, ms, entry.id, entry.repo, entry.commitId, env))
    return desired, problems, warnings


def with_commit(service: DesiredService, commit: str | None) -> DesiredService:
    return replace(service, commit=commit)


def decide(
    service: DesiredService,
    *,
    live: LiveState | None,
    problems: list[Problem] = (),
    force: bool = False,
    env_mode: bool = False,
    apply_enabled: bool | None = None,
    image_present: bool | None = None,
) -> PlanItem:
    """The action for one service. `noop` only when the live runtime proves the desired commit."""
    item = PlanItem(
        id=service.id,
        repo=service.repo,
        requestedCommit=service.requestedCommit,
        commit=service.commit,
        mode=service.mode,
        target=service.target,
        live=live,
        action="error",
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
        return item.model_copy(update={"action": "unsupported", "reason": reason, "applyEnabled": False if env_mode else None})
    short = (service.commit or "")[:12]
    if env_mode:
        reason = f"environment dry-run plan: would build {short} on {service.target} ({service.mode}); live runtime not read"
        if apply_enabled is False:
            reason += "; environment apply is not enabled for this service"
        return item.model_copy(update={"action": "deploy", "reason": reason})
    if live is None:
        return item.model_copy(update={"action": "deploy", "reason": "live state not read"})
    if live.state == "unreachable":
        return item.model_copy(update={"reason": live.message or f"target {service.target} unreachable"})
    if live.state == "error":
        return item.model_copy(update={"reason": live.message or "live probe failed"})
    if live.state == "in-sync" and live.commit == service.commit:
        if force:
            return item.model_copy(update={"action": "deploy", "reason": f"--force: rebuild and roll out {short} although it is running"})
        return item.model_copy(update={"action": "noop", "reason": f"running {short} on every layer"})
    reasons = {
        "drift": f"running {(live.commit or '?')[:12]}, desired {short}",
        "missing": "not running",
        "provenance-mismatch": f"runtime layers disagree ({live.message or 'labels, env and health differ'}); desired {short}",
        "in-sync": f"running {(live.commit or '?')[:12]}, desired {short}",
        "unsupported": "runtime not managed by this executor",
    }
    return item.model_copy(update={"action": "deploy", "reason": reasons.get(live.state, live.state)})
