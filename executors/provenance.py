"""Provenance: which image the reconciler built, on this target, for which (service, commit).

Labels and `UNIDESK_DEPLOY_*` env are copied by `docker commit`, so they cannot prove an image.
What can is a record written by the build itself, on the target:

- the image is also tagged `<repository>:<tag>-<12 hex commit>` (the commit tag), so it stays on
  the target when the service's own tag moves on (an instant rollback can reuse it);
- a record `<workDir>/provenance/<service>/<scope>/<commit>.json` names the service, scope
  (`base`, or the environment), commit, image, commit tag and the image ID (the config digest
  Docker and containerd both use).

`deploy check` compares the image ID of what runs with the record for the commit the runtime
claims: a different ID is `provenance-mismatch`; no record at all is `unrecorded` (an image built
before records existed: reported, never a mismatch; the next build of that commit records it).
"""

from __future__ import annotations

import datetime
import json
import logging
import posixpath
import re
from dataclasses import asdict, dataclass

from unidesk_tui.identifiers import is_full_sha, is_image_ref, is_service_id
from unidesk_tui.model import Environment

log = logging.getLogger(__name__)

RECORD_DIR = "provenance"
IMAGE_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
SCOPE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
BASE_SCOPE = "base"


@dataclass(frozen=True)
class BuildRecord:
    """One build the reconciler made on a target."""

    service: str
    scope: str  # `base` or the environment name
    commit: str
    image: str  # the name the service runs
    commitTag: str  # <repository>:<tag>-<12 hex>
    imageId: str  # sha256:<64 hex>
    repo: str
    builtAt: str  # ISO 8601, UTC

    def to_json(self) -> str:
        return json.dumps({"schemaVersion": 1, **asdict(self)}, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BuildRecord | None:
        """The record in `text`, or None when it is not a well-formed record (never trusted half-way)."""
        try:
            doc = json.loads(text)
            record = cls(**{k: doc[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):
            return None
        if not (
            is_service_id(record.service)
            and SCOPE_RE.fullmatch(str(record.scope))
            and is_full_sha(record.commit)
            and is_image_ref(record.image)
            and IMAGE_ID_RE.fullmatch(str(record.imageId))
        ):
            return None
        return record


def scope_of(environment: Environment) -> str:
    """`base` for file mode, else the environment's name."""
    return str(environment) if Environment(environment).named else BASE_SCOPE


def commit_tag(image: str, commit: str) -> str:
    """`<repository>:<tag>-<12 hex>`: `unidesk-backend-core:main` -> `unidesk-backend-core:main-0123456789ab`."""
    name = image.split("@", 1)[0]
    repository, tag = name, "latest"
    if ":" in name.rsplit("/", 1)[-1]:
        repository, tag = name.rsplit(":", 1)
    return f"{repository}:{tag[:115]}-{commit[:12]}"


def record_path(work_dir: str, service_id: str, scope: str, commit: str) -> str:
    if not (is_service_id(service_id) and SCOPE_RE.fullmatch(scope) and is_full_sha(commit)):
        raise ValueError(f"refusing provenance key ({service_id!r}, {scope!r}, {commit!r})")
    return posixpath.join(work_dir, RECORD_DIR, service_id, scope, f"{commit}.json")


def new_record(
    service_id: str, environment: Environment, commit: str, image: str, image_id: str, repo: str
) -> BuildRecord:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return BuildRecord(service_id, scope_of(environment), commit, image, commit_tag(image, commit), image_id, repo, now)


# Written to a temporary name and renamed: a reader never sees half a file.
_WRITE = 'set -e; mkdir -p -- "$(dirname -- "$1")"; cat > "$1.tmp"; mv -f -- "$1.tmp" "$1"'


async def write_text(session, path: str, text: str) -> None:
    """Write a small file on the target atomically. Raises RuntimeError with the target's answer."""
    res = await session.run(["sh", "-c", _WRITE, "sh", path], input=text, timeout=30)
    if not res.ok:
        raise RuntimeError(f"cannot write {path}: {res.tail(300)}")


async def write_record(session, work_dir: str, record: BuildRecord) -> str:
    """Write `record` on the target; returns its path. Raises RuntimeError with the target's answer."""
    path = record_path(work_dir, record.service, record.scope, record.commit)
    await write_text(session, path, record.to_json())
    return path


async def read_record(
    session, work_dir: str, service_id: str, environment: Environment, commit: str
) -> BuildRecord | None:
    """The record of the reconciler's build of (service, commit) in this scope on the target, or None."""
    path = record_path(work_dir, service_id, scope_of(environment), commit)
    res = await session.run(["cat", "--", path], timeout=30)
    if not res.ok:
        return None
    record = BuildRecord.from_json(res.stdout)
    if record is None or (record.service, record.commit) != (service_id, commit):
        log.warning("ignoring malformed provenance record %s", path)
        return None
    return record


async def built_image(
    session, work_dir: str, service_id: str, environment: Environment, commit: str
) -> BuildRecord | None:
    """The image the reconciler built for (service, commit) when the target still holds it: the
    record exists and its commit tag still names the recorded image ID. None otherwise."""
    record = await read_record(session, work_dir, service_id, environment, commit)
    if record is None or not is_image_ref(record.commitTag):
        return None
    res = await session.run(["docker", "image", "inspect", "--format", "{{.Id}}", "--", record.commitTag], timeout=30)
    return record if res.ok and res.stdout.strip() == record.imageId else None


@dataclass(frozen=True)
class Identity:
    """How the running image relates to the record of the commit it claims."""

    status: str  # proven | mismatch | unrecorded | unknown
    running: str | None
    recorded: str | None
    message: str

    def evidence(self) -> dict:
        return {"status": self.status, "running": self.running, "recorded": self.recorded}


def judge(record: BuildRecord | None, running_id: str | None, commit: str | None) -> Identity:
    """Compare the running image ID with the record for `commit` (pure)."""
    short = (commit or "?")[:12]
    if not running_id:
        return Identity("unknown", None, record.imageId if record else None, "running image ID unknown")
    if record is None:
        return Identity(
            "unrecorded",
            running_id,
            None,
            f"image {running_id[:19]} has no build record for {short} (built before provenance records; the next "
            "build records it)",
        )
    if record.imageId == running_id:
        return Identity("proven", running_id, record.imageId, f"image {running_id[:19]} is the one built for {short}")
    return Identity(
        "mismatch",
        running_id,
        record.imageId,
        f"running image {running_id[:19]} is not the image built for {short} ({record.imageId[:19]})",
    )


async def expected_image_id(ctx) -> str | None:
    """The image ID verification requires: the one this job built (or reused), else the record of
    the commit on the target; None (logged) for a commit built before records existed."""
    built = ctx.shared.get("image_id")
    if built:
        return built
    service = ctx.service
    record = await read_record(await ctx.session(), ctx.target.workDir, service.id, service.environment, service.commit)
    if record is not None:
        return record.imageId
    ctx.emit(
        f"identity=unrecorded (no build record for {service.commit[:12]} on {ctx.target.id}; labels, env and health "
        "only)"
    )
    return None
