"""Environment isolation: an environment run never touches production objects or images.

Asked by the plan (apply refuses before a job starts), by the engine and by the executors' step
lists, so whichever path a run takes, an isolation problem stops it before anything runs.
"""

from __future__ import annotations

from unidesk_tui.errors import ErrorCode, Problem, UnideskError
from unidesk_tui.identifiers import same_image
from unidesk_tui.model import DesiredService

ISOLATED_MODE = "k3sctl-managed"  # the only mode an environment run may use


def isolation_problems(service: DesiredService) -> list[Problem]:
    """Why an environment run of `service` could touch production (nothing in file mode).

    It needs the service's own `environments.<env>` override, k3sctl-managed, whose k8s namespace
    and target are the profile's, and an environment image distinct from every other run's image.
    """
    env, ms = service.environment, service.microservice
    if not env.named or ms is None:
        return []
    where = f"config.json microservices[{service.id}].environments.{env}"
    problems: list[str] = []
    override = ms.environments.get(env.key) if env.key else None
    profile = service.profile
    if profile is None:
        problems.append(f"config.json declares no environments.{env} profile")
    if override is None:
        problems.append(f"{where} is not declared: an {env} apply would run the production deployment")
    else:
        if service.mode != ISOLATED_MODE:
            problems.append(f"{where}: environment apply runs {ISOLATED_MODE} services only, not {service.mode}")
        if override.k8s is None:
            problems.append(f"{where}.k8s is not declared: an {env} apply would use the production objects")
        elif profile is not None and override.k8s.namespace != profile.namespace:
            problems.append(
                f"{where}.k8s.namespace is {override.k8s.namespace!r}, environments.{env}.namespace is "
                f"{profile.namespace!r}"
            )
        if profile is not None and service.target != profile.target:
            problems.append(
                f"{where}: deployment target {service.target!r} is not environments.{env}.target {profile.target!r}"
            )
        image = override.build.image if override.build else None
        others = {ms.build.image if ms.build else None} | {
            o.build.image for e, o in ms.environments.items() if e != env and o.build
        }
        if image is None:
            problems.append(f"{where}.build.image is not declared: an {env} build would replace the production image")
        elif any(same_image(image, o) for o in others):
            problems.append(f"{where}.build.image {image} is the image another environment runs")
    return [Problem(ErrorCode.ENVIRONMENT_ISOLATION, f"{service.id}: {p}", service=service.id) for p in problems]


def apply_refusal(service: DesiredService, enabled: set[str] | frozenset[str], *, only: bool = True) -> list[Problem]:
    """Why `deploy apply --env <env> --service <id>` would refuse this service (empty: it accepts it).

    The plan's `applyEnabled` and apply's refusal both come from here, so they cannot disagree:
    the service must be in `environments.<env>.applyEnabled` and isolated from production.
    `only` says whether the service was named with --service (the message differs, not the answer).
    """
    env = service.environment
    if not env.named or service.microservice is None or not service.supported:
        return []
    if service.id not in enabled:
        msg = f"{service.id}: environment apply is not enabled for {env} (config.json environments.{env}.applyEnabled)"
        if not only:
            msg += f" although the {env} manifest lists it; pass --service for the enabled ones"
        return [Problem(ErrorCode.SERVICE_NOT_ENABLED, msg, service=service.id)]
    return isolation_problems(service)


def refuse_unisolated(service: DesiredService) -> None:
    """Raise `environment_isolation` when an environment run of `service` could touch production."""
    problems = isolation_problems(service)
    if problems:
        raise UnideskError(*problems)


def touches_production_twin(service: DesiredService) -> bool:
    """Whether a run may act on production's own leftovers (a legacy direct-Docker twin): file mode only."""
    return not service.environment.named
