"""Reading a Docker service's runtime: its compose container, the image labels, the deploy env.

Everything goes through the aiodocker client the target session forwards over SSH; nothing here
changes the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from contextvars import ContextVar
from dataclasses import dataclass, field

from aiodocker.exceptions import DockerError

from executors.stamp import (
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    LABEL_COMMIT,
    LABEL_SERVICE,
    LABELS,
    deploy_values,
    parse_env,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContainerFacts:
    """What one compose container shows about itself."""

    id: str
    name: str
    running: bool
    status: str
    image_ref: str  # Config.Image: the tag compose ran
    image_id: str
    labels: dict[str, str]  # container labels (compose's own)
    image_labels: dict[str, str]  # unidesk.ai/* labels of the image it runs
    env: dict[str, str]  # UNIDESK_DEPLOY_* only
    others: int = 0  # further containers of the same service
    state: dict = field(default_factory=dict)  # Docker's State (ExitCode, Restarting, Error, ...)
    restarts: int = 0  # RestartCount: restarts since this container was created

    def evidence(self) -> dict:
        return {
            "container": {
                "id": self.id[:12],
                "name": self.name,
                "status": self.status,
                "image": self.image_ref,
                "imageId": self.image_id[:19],
            },
            "labels": self.image_labels,
            "env": self.env,
            **({"otherContainers": self.others} if self.others else {}),
        }


@dataclass(frozen=True)
class ComposeRef:
    """Which compose project/service a container belongs to (None = any project)."""

    project: str | None
    service: str


# Target-wide listings shared by every probe of one live read (set by `shared_listings`): one
# container list and one stamped-image list per target instead of several calls per service.
# Outside that block (e.g. verification after a rollout) every call reads the daemon afresh.
_listings: ContextVar[dict | None] = ContextVar("unidesk_docker_listings", default=None)


@contextlib.contextmanager
def shared_listings():
    token = _listings.set({})
    try:
        yield
    finally:
        _listings.reset(token)


async def _listing(docker, key: str, fetch):
    cache = _listings.get()
    if cache is None:
        return await fetch()
    slot = (id(docker), key)
    if slot not in cache:
        cache[slot] = asyncio.ensure_future(fetch())
    return await cache[slot]


async def compose_containers(docker) -> list[dict]:
    """Every compose-labelled container of the daemon, running or not (as `containers/json` lists them)."""

    async def fetch():
        listed = await docker.containers.list(all="1", filters=json.dumps({"label": [COMPOSE_SERVICE]}))
        return [c._container for c in listed]

    return await _listing(docker, "containers", fetch)


async def stamped_images(docker) -> list[dict]:
    """Every image carrying a unidesk.ai/service-id label (as `images/json` lists them)."""
    return await _listing(docker, "images", lambda: docker.images.list(filters={"label": [LABEL_SERVICE]}))


def pick_container(rows: list[dict], ref: ComposeRef) -> tuple[dict | None, int]:
    """The service's container among listed ones (running first, then newest) and how many more match."""
    matching = [
        r
        for r in rows
        if (r.get("Labels") or {}).get(COMPOSE_SERVICE) == ref.service
        and (ref.project is None or (r.get("Labels") or {}).get(COMPOSE_PROJECT) == ref.project)
    ]
    if not matching:
        return None, 0
    matching.sort(key=lambda r: (r.get("State") != "running", -int(r.get("Created") or 0)))
    return matching[0], len(matching) - 1


async def find_container(docker, ref: ComposeRef) -> tuple[dict | None, int]:
    """The service's container, as `docker inspect` shows it, and how many further containers match."""
    row, others = pick_container(await compose_containers(docker), ref)
    if row is None:
        return None, 0
    return await docker.containers.container(row["Id"]).show(), others


async def image_unidesk_labels(docker, image_id: str) -> dict[str, str]:
    for image in await stamped_images(docker):
        if image.get("Id") == image_id:
            return {k: v for k, v in (image.get("Labels") or {}).items() if k in LABELS}
    try:  # not stamped with a service id: read it anyway, it may carry some of the labels
        image = await docker.images.inspect(image_id)
    except DockerError as exc:  # the image may have been removed under a running container
        log.debug("image %s not inspectable: %s", image_id, exc)
        return {}
    return {k: v for k, v in ((image.get("Config") or {}).get("Labels") or {}).items() if k in LABELS}


async def container_facts(docker, ref: ComposeRef) -> ContainerFacts | None:
    inspected, others = await find_container(docker, ref)
    if inspected is None:
        return None
    config = inspected.get("Config") or {}
    state = inspected.get("State") or {}
    image_id = inspected.get("Image") or ""
    return ContainerFacts(
        id=inspected.get("Id", ""),
        name=(inspected.get("Name") or "").lstrip("/"),
        running=bool(state.get("Running")),
        status=state.get("Status") or "unknown",
        image_ref=config.get("Image") or "",
        image_id=image_id,
        labels=dict(config.get("Labels") or {}),
        image_labels=await image_unidesk_labels(docker, image_id) if image_id else {},
        env=deploy_values(parse_env(config.get("Env"))),
        others=others,
        state=dict(state),
        restarts=int(inspected.get("RestartCount") or 0),
    )


def has_image(images: list[dict], service_id: str, commit: str) -> bool:
    return any(
        (i.get("Labels") or {}).get(LABEL_SERVICE) == service_id and (i.get("Labels") or {}).get(LABEL_COMMIT) == commit
        for i in images
    )


async def image_present(docker, service_id: str, commit: str | None) -> bool | None:
    """An image labelled as this service at this commit exists on the target (None: no commit)."""
    if not commit:
        return None
    return has_image(await stamped_images(docker), service_id, commit)
