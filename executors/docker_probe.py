"""Reading a Docker service's runtime: its compose container, the image labels, the deploy env.

Everything goes through the aiodocker client the target session forwards over SSH; nothing here
changes the target.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from aiodocker.exceptions import DockerError

from executors.stamp import COMPOSE_PROJECT, COMPOSE_SERVICE, LABEL_COMMIT, LABEL_SERVICE, LABELS, deploy_values, parse_env

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

    def evidence(self) -> dict:
        return {
            "container": {"id": self.id[:12], "name": self.name, "status": self.status, "image": self.image_ref, "imageId": self.image_id[:19]},
            "labels": self.image_labels,
            "env": self.env,
            **({"otherContainers": self.others} if self.others else {}),
        }


@dataclass(frozen=True)
class ComposeRef:
    """Which compose project/service a container belongs to (None = any project)."""

    project: str | None
    service: str


def label_filters(ref: ComposeRef) -> list[str]:
    out = [f"{COMPOSE_SERVICE}={ref.service}"]
    if ref.project:
        out.insert(0, f"{COMPOSE_PROJECT}={ref.project}")
    return out


async def find_container(docker, ref: ComposeRef) -> tuple[dict | None, int]:
    """The service's container (running ones first), as `docker inspect` shows it, and how many
    further containers match."""
    listed = await docker.containers.list(all="1", filters=json.dumps({"label": label_filters(ref)}))
    rows = [c._container for c in listed]
    if not rows:
        return None, 0
    rows.sort(key=lambda r: (r.get("State") != "running", -int(r.get("Created") or 0)))
    container = docker.containers.container(rows[0]["Id"])
    return await container.show(), len(rows) - 1


async def container_facts(docker, ref: ComposeRef) -> ContainerFacts | None:
    inspected, others = await find_container(docker, ref)
    if inspected is None:
        return None
    config = inspected.get("Config") or {}
    state = inspected.get("State") or {}
    image_id = inspected.get("Image") or ""
    image_labels: dict[str, str] = {}
    try:
        image = await docker.images.inspect(image_id)
        all_labels = (image.get("Config") or {}).get("Labels") or {}
        image_labels = {k: v for k, v in all_labels.items() if k in LABELS}
    except DockerError as exc:  # the image may have been removed under a running container
        log.debug("image %s not inspectable: %s", image_id, exc)
    return ContainerFacts(
        id=inspected.get("Id", ""),
        name=(inspected.get("Name") or "").lstrip("/"),
        running=bool(state.get("Running")),
        status=state.get("Status") or "unknown",
        image_ref=config.get("Image") or "",
        image_id=image_id,
        labels=dict(config.get("Labels") or {}),
        image_labels=image_labels,
        env=deploy_values(parse_env(config.get("Env"))),
        others=others,
    )


async def image_present(docker, service_id: str, commit: str) -> bool:
    """An image labelled as this service at this commit exists on the target."""
    images = await docker.images.list(filters={"label": [f"{LABEL_SERVICE}={service_id}", f"{LABEL_COMMIT}={commit}"]})
    return bool(images)


async def image_exists(docker, ref: str) -> bool:
    try:
        await docker.images.inspect(ref)
        return True
    except DockerError:
        return False
