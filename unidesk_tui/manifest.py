"""`deploy.json`: the desired-state manifest, which says only which service runs which commit.

Validation walks the parsed document by hand so that every problem is reported at once with its
JSON path, and so that keys the specification forbids get their own code.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from unidesk_tui.errors import ErrorCode, Problem, UnideskError
from unidesk_tui.identifiers import is_commit_id, is_repo_url, is_service_id
from unidesk_tui.json_input import load_json
from unidesk_tui.model import NAMED_ENVIRONMENTS
from unidesk_tui.redact import redact_url

Environment = Literal["dev", "prod"]
SCHEMA_VERSION = 1

# Kinds of runtime detail the spec keeps out of deploy.json, as normalised key names
# (lower case, separators removed). They live in config.json and the service manifests.
_FORBIDDEN_SERVICE_KEYS = frozenset(
    {
        "provider",
        "providerid",
        "providers",
        "port",
        "ports",
        "hostport",
        "containerport",
        "compose",
        "composeservice",
        "composeproject",
        "composefile",
        "servicename",
        "namespace",
        "k8snamespace",
        "kubernetesnamespace",
        "health",
        "healthpath",
        "healthcheck",
        "healthurl",
        "env",
        "envvars",
        "environment",
        "environmentvariables",
        "variables",
        "dockerfile",
        "dockerfilepath",
        "build",
        "buildcommand",
        "buildcmd",
        "buildargs",
        "command",
        "cmd",
        "entrypoint",
        "image",
        "imagename",
        "imagetag",
    }
)
# At the top level `environment` is the legitimate dev|prod selector, not env vars.
_FORBIDDEN_TOP_KEYS = _FORBIDDEN_SERVICE_KEYS - {"environment"}
_TOP_KEYS = ("schemaVersion", "environment", "services")
_SERVICE_KEYS = ("id", "repo", "commitId")


class ServiceEntry(BaseModel):
    """One desired service: its id, source repository and the commit to run."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    repo: str
    commitId: str


class DeployManifest(BaseModel):
    """A validated `deploy.json`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schemaVersion: Literal[1]
    environment: Environment | None = None
    services: tuple[ServiceEntry, ...]

    def service(self, service_id: str) -> ServiceEntry | None:
        return next((s for s in self.services if s.id == service_id), None)


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def _key_problem(key: str, path: str, forbidden: frozenset[str]) -> Problem:
    if _norm(key) in forbidden:
        return Problem(
            ErrorCode.FORBIDDEN_FIELD,
            f"{path}: deploy.json must not carry runtime details ({key!r}); they belong in config.json",
            path=path,
        )
    return Problem(ErrorCode.UNKNOWN_FIELD, f"{path}: unknown field {key!r}", path=path)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _check_service(index: int, raw: Any, problems: list[Problem]) -> None:
    base = f"services[{index}]"
    if not isinstance(raw, dict):
        problems.append(
            Problem(ErrorCode.INVALID_VALUE, f"{base}: expected an object, got {_type_name(raw)}", path=base)
        )
        return
    sid = raw.get("id") if isinstance(raw.get("id"), str) else None
    for key in raw:
        if key not in _SERVICE_KEYS:
            p = _key_problem(key, f"{base}.{key}", _FORBIDDEN_SERVICE_KEYS)
            problems.append(
                Problem(p.code, p.message, service=sid if sid and is_service_id(sid) else None, path=p.path)
            )
    checks = (
        ("id", is_service_id, "a DNS-label-like id (lowercase letters, digits, '-'; 1-63 chars)"),
        ("repo", is_repo_url, "an http(s)/ssh/git/file repository URL without whitespace or a leading '-'"),
        ("commitId", is_commit_id, "4 to 40 hexadecimal characters"),
    )
    for key, ok, what in checks:
        path = f"{base}.{key}"
        if key not in raw:
            problems.append(Problem(ErrorCode.MISSING_FIELD, f"{path}: required field is missing", path=path))
        elif not ok(raw[key]):
            shown = redact_url(json.dumps(raw[key]))[:80]
            if key == "repo" and isinstance(raw[key], str) and "@" in raw[key].split("://", 1)[-1].split("/", 1)[0]:
                what = "a repository URL without credentials (use a credential helper or an ssh key)"
            problems.append(Problem(ErrorCode.INVALID_VALUE, f"{path}: {shown} is not {what}", path=path))


def validate_document(doc: Any) -> DeployManifest:
    """Validate an already-parsed JSON value; raise UnideskError listing every problem."""
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        raise UnideskError(
            Problem(ErrorCode.MANIFEST_INVALID, f"deploy.json must be a JSON object, got {_type_name(doc)}", path="$")
        )
    for key in doc:
        if key not in _TOP_KEYS:
            problems.append(_key_problem(key, key, _FORBIDDEN_TOP_KEYS))
    version = doc.get("schemaVersion")
    if "schemaVersion" not in doc:
        problems.append(
            Problem(ErrorCode.MISSING_FIELD, "schemaVersion: required field is missing", path="schemaVersion")
        )
    elif type(version) is not int or version != SCHEMA_VERSION:
        problems.append(
            Problem(
                ErrorCode.INVALID_VALUE,
                f"schemaVersion: must be {SCHEMA_VERSION}, got {json.dumps(version)[:40]}",
                path="schemaVersion",
            )
        )
    if "environment" in doc and doc["environment"] not in NAMED_ENVIRONMENTS:
        problems.append(
            Problem(
                ErrorCode.INVALID_VALUE,
                f'environment: must be "dev" or "prod", got {json.dumps(doc["environment"])[:40]}',
                path="environment",
            )
        )
    services = doc.get("services")
    if "services" not in doc:
        problems.append(Problem(ErrorCode.MISSING_FIELD, "services: required field is missing", path="services"))
    elif not isinstance(services, list) or not services:
        problems.append(Problem(ErrorCode.INVALID_VALUE, "services: must be a non-empty array", path="services"))
    else:
        seen: dict[str, int] = {}
        for index, raw in enumerate(services):
            _check_service(index, raw, problems)
            sid = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(sid, str) and is_service_id(sid):
                if sid in seen:
                    problems.append(
                        Problem(
                            ErrorCode.DUPLICATE_SERVICE,
                            f"services[{index}].id: {sid!r} already listed at services[{seen[sid]}]",
                            service=sid,
                            path=f"services[{index}].id",
                        )
                    )
                else:
                    seen[sid] = index
    if problems:
        raise UnideskError(*problems)
    return DeployManifest.model_validate(doc)


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_manifest(text: str | bytes, origin: str = "deploy.json") -> DeployManifest:
    """Parse and validate manifest text; unparseable JSON names the line and column."""
    try:
        doc = load_json(text, origin=origin, code=ErrorCode.MANIFEST_INVALID, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        raise UnideskError.of(ErrorCode.MANIFEST_INVALID, f"{origin}: duplicate key {str(exc)!r}") from None
    return validate_document(doc)
