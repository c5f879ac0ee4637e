"""The version stamping contract: label and env names, and how layers of evidence become a state.

Every layer a runtime has (image label, container env or Deployment annotation, health body) must
prove the same full SHA; `derive_state` turns what the layers show into the live state name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from unidesk_tui.identifiers import is_full_sha

log = logging.getLogger(__name__)

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


def deploy_env(service_id: str, repo: str, commit: str, requested: str) -> dict[str, str]:
    """The four UNIDESK_DEPLOY_* variables stamped on the runtime."""
    return {ENV_SERVICE: service_id, ENV_REPO: repo, ENV_COMMIT: commit, ENV_REQUESTED: requested}


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


@dataclass(frozen=True)
class Layer:
    """One piece of runtime evidence: its name, whether the runtime should have it, its commit."""

    name: str
    commit: str | None
    expected: bool = True
    note: str = ""


@dataclass(frozen=True)
class Derived:
    state: str
    commit: str | None
    message: str


def derive_state(layers: Iterable[Layer], desired: str | None) -> Derived:
    """The live state of a running service from its layers.

    - layers that show different commits: `provenance-mismatch`;
    - all showing one commit other than `desired`: `drift`;
    - all showing `desired` but an expected layer proves nothing: `provenance-mismatch`
      (noop needs every layer the runtime has);
    - no layer proves any commit: `drift` with commit None.
    """
    layers = list(layers)
    shown = {layer.name: layer.commit for layer in layers if layer.commit}
    distinct = sorted(set(shown.values()))
    if len(distinct) > 1:
        parts = ", ".join(f"{name} {commit[:12]}" for name, commit in shown.items())
        return Derived("provenance-mismatch", None, f"layers disagree: {parts}")
    if not distinct:
        return Derived("drift", None, "runtime proves no commit (no unidesk.ai labels, deploy env or health deploy.commit)")
    commit = distinct[0]
    if desired and commit != desired:
        return Derived("drift", commit, f"running {commit[:12]}")
    silent = [layer for layer in layers if layer.expected and not layer.commit]
    if silent:
        parts = ", ".join(f"{layer.name}{' (' + layer.note + ')' if layer.note else ''}" for layer in silent)
        return Derived("provenance-mismatch", commit, f"{', '.join(shown)} show {commit[:12]} but {parts} prove nothing")
    return Derived("in-sync", commit, f"{', '.join(shown)} show {commit[:12]}")
