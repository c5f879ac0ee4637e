"""The version stamping contract: the label and env names every runtime layer carries, and how
a layer's value is read as a commit (judging the layers is executors/observe.py's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from unidesk_tui.identifiers import is_full_sha

LABEL_SERVICE = "unidesk.ai/service-id"
LABEL_REPO = "unidesk.ai/source-repo"
LABEL_COMMIT = "unidesk.ai/source-commit"
LABEL_DOCKERFILE = "unidesk.ai/dockerfile"
LABELS = (LABEL_SERVICE, LABEL_REPO, LABEL_COMMIT, LABEL_DOCKERFILE)

ENV_SERVICE = "UNIDESK_DEPLOY_SERVICE_ID"
ENV_REPO = "UNIDESK_DEPLOY_REPO"
ENV_COMMIT = "UNIDESK_DEPLOY_COMMIT"
ENV_REQUESTED = "UNIDESK_DEPLOY_REQUESTED_COMMIT"
ENVS = (ENV_SERVICE, ENV_REPO, ENV_COMMIT, ENV_REQUESTED)

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_FILES = "com.docker.compose.project.config_files"
COMPOSE_WORKDIR = "com.docker.compose.project.working_dir"


def image_labels(service_id: str, repo: str, commit: str, dockerfile: str) -> dict[str, str]:
    """The four labels every built image carries."""
    return {LABEL_SERVICE: service_id, LABEL_REPO: repo, LABEL_COMMIT: commit, LABEL_DOCKERFILE: dockerfile}


def deploy_env(service_id: str, repo: str, commit: str | None, requested: str) -> dict[str, str]:
    """The four UNIDESK_DEPLOY_* variables stamped on the runtime (steps run only on a resolved commit)."""
    return {ENV_SERVICE: service_id, ENV_REPO: repo, ENV_COMMIT: commit or "", ENV_REQUESTED: requested}


def parse_env(entries: Iterable[str] | None) -> dict[str, str]:
    """Docker's `KEY=value` list -> dict (later entries win, as in Docker)."""
    out: dict[str, str] = {}
    for entry in entries or ():
        key, sep, value = entry.partition("=")
        if sep:
            out[key] = value
    return out


def deploy_values(mapping: Mapping[str, str] | None) -> dict[str, str]:
    """Only the UNIDESK_DEPLOY_* entries of an env or annotation mapping."""
    return {k: v for k, v in (mapping or {}).items() if k in ENVS}


def commit_of(value: object) -> str | None:
    """A full SHA when `value` is one (lower-cased), else None."""
    if isinstance(value, str) and is_full_sha(value.strip().lower()):
        return value.strip().lower()
    return None


def health_commit(body: object) -> str | None:
    """`deploy.commit` of a health body, when it carries a full SHA."""
    if isinstance(body, dict) and isinstance(body.get("deploy"), dict):
        return commit_of(body["deploy"].get("commit"))
    return None
