"""Where a deploy manifest comes from: a local file, or an environment's fixed git ref.

Environment mode fetches `origin/deploy/<env>` and reads deploy.json from that commit's tree,
never from the working tree; the provenance (ref, commit, blob) travels with every result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from unidesk_tui.errors import ErrorCode, UnideskError, decisive_line
from unidesk_tui.manifest import DeployManifest, parse_manifest
from unidesk_tui.model import NAMED_ENVIRONMENTS
from unidesk_tui.redact import redact_url
from unidesk_tui.resolve import FETCH_TIMEOUT_S, GIT_ENV

MANIFEST_NAME = "deploy.json"
ENV_BRANCHES = {"dev": "deploy/dev", "prod": "deploy/prod"}


@dataclass(frozen=True)
class FileSource:
    path: str
    declaredEnvironment: str | None = None  # the manifest's own `environment`
    kind: Literal["file"] = "file"

    @property
    def legacyProductionPath(self) -> bool:
        """A file declaring prod: the legacy production path the spec keeps for local files."""
        return self.declaredEnvironment == "prod"


@dataclass(frozen=True)
class EnvSource:
    environment: str
    ref: str  # e.g. origin/deploy/dev
    manifestCommit: str
    manifestBlob: str
    kind: Literal["env"] = "env"


@dataclass
class LoadedManifest:
    manifest: DeployManifest
    source: FileSource | EnvSource
    warnings: list[str] = field(default_factory=list)

    @property
    def environment(self) -> str | None:
        return self.source.environment if isinstance(self.source, EnvSource) else self.manifest.environment


def load_file(path: Path) -> LoadedManifest:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnideskError.of(ErrorCode.MANIFEST_NOT_FOUND, f"manifest not found: {path}") from None
    except OSError as exc:
        raise UnideskError.of(ErrorCode.MANIFEST_INVALID, f"cannot read {path}: {exc.strerror}") from None
    manifest = parse_manifest(data, origin=str(path))
    warnings = file_mode_warnings(str(path), manifest.environment)
    return LoadedManifest(manifest, FileSource(str(path), manifest.environment), warnings)


def file_mode_warnings(path: str, declared: str | None) -> list[str]:
    """File mode reads and plans against the production targets, whatever the file declares."""
    if declared == "dev":
        return [
            f'{path} declares environment "dev", but file mode reads and plans against the production '
            f"targets; deploy apply refuses it (environment_mismatch): use --env dev, which reads "
            f"origin/{ENV_BRANCHES['dev']}"
        ]
    if declared == "prod":
        return [
            f'{path} declares environment "prod": file mode is the legacy production path (the live runtime of '
            f"every host); the environment plan of origin/{ENV_BRANCHES['prod']} is --env prod"
        ]
    return []


def file_mode_refusal(loaded: LoadedManifest) -> UnideskError | None:
    """A file declaring dev must not be applied in file mode, which targets production."""
    src = loaded.source
    if not isinstance(src, FileSource) or src.declaredEnvironment != "dev":
        return None
    return UnideskError.of(
        ErrorCode.ENVIRONMENT_MISMATCH,
        f'{src.path} declares environment "dev", but a file-mode apply runs against the production targets; '
        f"use deploy apply --env dev (it reads origin/{ENV_BRANCHES['dev']})",
        path="environment",
    )


def load_env(workspace: Path, environment: str) -> LoadedManifest:
    """Fetch origin's fixed ref for `environment` and read deploy.json from that commit."""
    import git  # lazily: gitpython costs ~80 ms at start-up, and most commands never fetch

    if environment not in NAMED_ENVIRONMENTS:
        raise UnideskError.of(ErrorCode.USAGE, f"unknown environment {environment!r}; expected dev or prod")
    branch = ENV_BRANCHES[environment]
    tracking = f"refs/remotes/origin/{branch}"
    try:
        repo = git.Repo(workspace)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise UnideskError.of(
            ErrorCode.WORKSPACE_INVALID, f"{workspace} is not a git repository; environment mode reads origin/{branch}"
        ) from None
    if "origin" not in [r.name for r in repo.remotes]:
        raise UnideskError.of(ErrorCode.WORKSPACE_INVALID, f"{workspace} has no `origin` remote")
    origin_url = redact_url(repo.remotes.origin.url)
    try:
        repo.git.fetch(
            "--quiet",
            "--no-tags",
            "origin",
            f"+refs/heads/{branch}:{tracking}",
            env={**os.environ, **GIT_ENV},
            kill_after_timeout=FETCH_TIMEOUT_S,
        )
    except git.GitCommandError as exc:
        stderr = exc.stderr or ""
        if "couldn't find remote ref" in stderr:
            raise UnideskError.of(
                ErrorCode.ENV_REF_NOT_FOUND, f"origin ({origin_url}) has no branch {branch}"
            ) from None
        last = decisive_line(stderr)
        raise UnideskError.of(
            ErrorCode.REPO_UNREACHABLE,
            f"cannot fetch origin/{branch} from {origin_url}: {redact_url(last).removeprefix('stderr: ')}",
        ) from None
    commit = repo.commit(tracking)
    names = [entry.path for entry in commit.tree]
    if MANIFEST_NAME not in names:
        raise UnideskError.of(
            ErrorCode.MANIFEST_NOT_FOUND, f"origin/{branch} at {commit.hexsha} has no {MANIFEST_NAME}"
        )
    blob = commit.tree[MANIFEST_NAME]
    origin = f"origin/{branch}:{MANIFEST_NAME}"
    manifest = parse_manifest(blob.data_stream.read(), origin=origin)
    if manifest.environment is None:
        raise UnideskError.of(
            ErrorCode.ENVIRONMENT_MISMATCH,
            f'{origin} declares no environment; --env {environment} requires "environment": "{environment}"',
            path="environment",
        )
    if manifest.environment != environment:
        raise UnideskError.of(
            ErrorCode.ENVIRONMENT_MISMATCH,
            f"{origin} declares environment {manifest.environment!r} but --env {environment} was requested",
            path="environment",
        )
    warnings = []
    extra = sorted(str(n) for n in names if n != MANIFEST_NAME)
    if extra:
        warnings.append(f"origin/{branch} should hold only {MANIFEST_NAME}; it also carries: {', '.join(extra)}")
    source = EnvSource(environment, f"origin/{branch}", commit.hexsha, blob.hexsha)
    return LoadedManifest(manifest, source, warnings)
