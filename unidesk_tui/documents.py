"""The JSON documents the CLI prints: a public API, defined once as pydantic models.

`python -m unidesk_tui.documents` regenerates `docs/schema/`; a test fails when it is stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from unidesk_tui.model import Action, Environment, JobStatus, Layer, LiveState, Outcome, StepStatus

if TYPE_CHECKING:
    from unidesk_tui.errors import Problem

__all__ = ["LiveState"]  # defined with the vocabulary (executors build it), published in plan items


class _Doc(BaseModel):
    # Built on first use, not at import: `job list` and `--help` need only a few of them.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """pydantic's copy, with `update` validated as the constructor validates its arguments:
        {"status": "running"} stores JobStatus.RUNNING (pydantic would keep the str, and warn each
        time the document is serialized), and a value of the wrong type is refused here."""
        copy = super().model_copy(deep=deep)
        for name, value in (update or {}).items():
            self.__pydantic_validator__.validate_assignment(copy, name, value)
        return copy


class ErrorItem(_Doc):
    code: str
    message: str
    service: str | None = None
    path: str | None = None


def to_errors(problems: Iterable[Problem]) -> list[ErrorItem]:
    """Coded problems as the `errors` of a document."""
    return [ErrorItem(**p.to_dict()) for p in problems]


class FileSourceDoc(_Doc):
    kind: Literal["file"] = "file"
    path: str
    declaredEnvironment: Literal["dev", "prod"] | None = Field(
        None, description="The manifest's own `environment`, if any"
    )
    legacyProductionPath: bool = Field(
        False,
        description="True when the file declares prod: file mode is then the legacy production path "
        "(a file declaring dev is not applied)",
    )


class EnvSourceDoc(_Doc):
    kind: Literal["env"] = "env"
    environment: Literal["dev", "prod"]
    ref: str
    manifestCommit: str = Field(pattern=r"^[0-9a-f]{40}$")
    manifestBlob: str = Field(pattern=r"^[0-9a-f]{40}$")


class PlanItem(_Doc):
    id: str
    repo: str | None = None
    requestedCommit: str | None = None
    commit: str | None = Field(None, description="Full 40-hex SHA resolved through the remote")
    mode: str | None = None
    target: str | None = None
    live: LiveState | None = None
    action: Action
    reason: str
    imagePresent: bool | None = Field(None, description="An image for the desired commit already exists on the target")
    applyEnabled: bool | None = Field(None, description="Environment mode: whether environment apply is enabled for it")


class EnvironmentPlan(_Doc):
    environment: Literal["dev", "prod"]
    namespace: str
    providerId: str
    target: str
    databaseName: str
    databaseFingerprint: str


class PlanDocument(_Doc):
    """Output of `deploy check` and `deploy plan` (and `--json check|plan`)."""

    ok: bool
    command: Literal["check", "plan"]
    source: FileSourceDoc | EnvSourceDoc | None = None
    environment: EnvironmentPlan | None = None
    services: list[PlanItem] = Field(default_factory=list)
    errors: list[ErrorItem] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    planFile: str | None = Field(
        None, description="`deploy plan --out FILE`: where the plan was saved for `deploy apply --plan`"
    )
    digest: str | None = Field(
        None, description="`deploy plan --out`: sha256 of the desired and live facts the plan binds"
    )


class PlanRequest(_Doc):
    """What a saved plan was computed from; `deploy apply --plan` plans again from the same."""

    file: str | None = None
    env: Literal["dev", "prod"] | None = None
    services: list[str] | None = None
    force: bool = False


class SavedPlan(_Doc):
    """`deploy plan --out FILE`: the reviewed plan bound to the facts it was decided from."""

    kind: Literal["unidesk-plan"] = "unidesk-plan"
    schemaVersion: Literal[1] = 1
    createdAt: str
    workspace: str
    request: PlanRequest
    digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of workspace + facts")
    facts: dict[str, dict[str, Any]] = Field(
        description="Per service: desired (repo, commits, mode, target, catalog entry digest, manifest commit) and "
        "live (state, commit, health, imagePresent)"
    )
    plan: PlanDocument


class ErrorDocument(_Doc):
    """Output of any command that failed before producing its own document."""

    ok: Literal[False] = False
    command: str
    errors: list[ErrorItem]
    warnings: list[str] = Field(default_factory=list)


class HelpDocument(_Doc):
    """Output of `-h`/`--help`: the command's usage text, as every command prints JSON."""

    ok: Literal[True] = True
    command: Literal["help"] = "help"
    prog: str = Field(description="The command the usage is for, e.g. `unidesk deploy apply`")
    usage: str = Field(description="argparse's usage and options text")


class LayerCheck(_Doc):
    """One verification comparison of a runtime layer with the requested deploy."""

    layer: Layer
    what: str = Field(description="What was compared, e.g. unidesk.ai/source-commit or `dc UNIDESK_DEPLOY_COMMIT`")
    expected: str | None = None
    actual: str | None = None
    ok: bool


class StepRecord(_Doc):
    """One executor step of one service inside a job."""

    service: str
    name: str
    status: StepStatus = StepStatus.PENDING
    readOnly: bool = False
    startedAt: str | None = None
    endedAt: str | None = None
    durationMs: int | None = None
    events: int = Field(0, description="Events the step itself emitted; a run step with 0 fails with no_progress")
    code: str | None = Field(None, description="Error code when failed")
    message: str | None = None
    verification: list[LayerCheck] = Field(
        default_factory=list, description="Verification steps: every layer compared in the last read"
    )


class Restored(_Doc):
    """What a failed job put back: the version that ran before it, re-verified."""

    service: str
    commit: str = Field(description="The commit running before the job, restored")
    verified: bool = Field(description="Whether live verification proved that commit again after the restore")
    message: str | None = None


class JobResult(_Doc):
    ok: bool
    services: dict[str, Outcome] = Field(default_factory=dict)
    errors: list[ErrorItem] = Field(default_factory=list)
    restored: Restored | None = Field(
        None, description="Set when a failed rollout or verification restored the previous version"
    )


class Operator(_Doc):
    """Who started a job (an audit trail, as Kamal's audit log keeps one): the local user, the
    controller's host and the workspace the command ran in."""

    user: str = Field(description="Local user name of the process that started the job")
    host: str = Field(description="Host name of the controller")
    workspace: str = Field(description="Absolute path of the controller's workspace")


class JobRecord(_Doc):
    """`<state dir>/jobs/<id>/job.json`, rewritten atomically at every change."""

    id: str = Field(pattern=r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")
    command: Literal["deploy apply", "dev-env prewarm-images"] = "deploy apply"
    status: JobStatus
    environment: Environment = Field(description="Lock scope: file mode, or the environment")
    source: FileSourceDoc | EnvSourceDoc
    workspace: str
    dryRun: bool = False
    force: bool = False
    noRestore: bool = Field(
        False, description="--no-restore: a failed rollout or verification keeps the failed version"
    )
    services: list[str] = Field(default_factory=list)
    plan: list[PlanItem] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    result: JobResult | None = None
    createdAt: str
    startedAt: str | None = None
    endedAt: str | None = None
    host: str
    workerPid: int | None = None
    workerStart: int | None = Field(
        None, description="Worker process start time (clock ticks since boot), to tell a reused pid apart"
    )
    locks: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    operator: Operator | None = Field(
        None, description="Who started the job (null in job.json written before it was recorded)"
    )


class JobEvent(_Doc):
    """One line of `<state dir>/jobs/<id>/events.jsonl`."""

    ts: str
    seq: int
    step: str | None = None
    service: str | None = None
    stream: str
    text: str


class LogTail(_Doc):
    size: int = Field(description="Log size in bytes when read")
    offset: int = Field(description="Byte offset of the first returned event")
    truncated: bool = Field(description="True when earlier events exist before `offset`")
    events: list[JobEvent] = Field(default_factory=list)


class ApplyDocument(_Doc):
    """Output of `deploy apply`: the job started (and, with --wait, how it ended)."""

    ok: bool
    command: Literal["apply"] = "apply"
    jobId: str | None = None
    status: JobStatus | None = None
    dryRun: bool = False
    source: FileSourceDoc | EnvSourceDoc | None = None
    environment: EnvironmentPlan | None = None
    services: list[PlanItem] = Field(default_factory=list)
    job: JobRecord | None = Field(None, description="With --wait: the finished job")
    errors: list[ErrorItem] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class JobDocument(_Doc):
    """Output of `job status` (job.json plus a bounded tail of its event log) and `job cancel`."""

    ok: bool
    command: Literal["job status", "job cancel"] = "job status"
    job: JobRecord | None = None
    log: LogTail | None = None
    errors: list[ErrorItem] = Field(default_factory=list)


class JobSummary(_Doc):
    id: str
    status: JobStatus
    environment: Environment
    services: list[str]
    dryRun: bool
    createdAt: str
    endedAt: str | None = None
    operator: Operator | None = None


class JobListDocument(_Doc):
    """Output of `job list`, newest first."""

    ok: bool
    command: Literal["job list"] = "job list"
    jobs: list[JobSummary] = Field(default_factory=list)
    errors: list[ErrorItem] = Field(default_factory=list)


class JobPruneDocument(_Doc):
    """Output of `job prune`: the finished jobs removed, and what was kept."""

    ok: bool
    command: Literal["job prune"] = "job prune"
    removed: list[str] = Field(default_factory=list, description="Ids of the finished jobs removed, newest first")
    kept: list[str] = Field(
        default_factory=list, description="Ids of the jobs kept (running and queued ones always), newest first"
    )
    errors: list[ErrorItem] = Field(default_factory=list)


DOCUMENTS: dict[str, type[BaseModel]] = {
    "plan": PlanDocument,
    "error": ErrorDocument,
    "help": HelpDocument,
    "apply": ApplyDocument,
    "job": JobDocument,
    "job-list": JobListDocument,
    "job-prune": JobPruneDocument,
    "saved-plan": SavedPlan,
}


def schemas() -> dict[str, str]:
    """File name -> JSON Schema text, for every published document."""
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in DOCUMENTS.items()
    }


# What `job status`, `job list` and `--help` read or print without pydantic (job_files.py).
LIGHT: tuple[type[BaseModel], ...] = (
    JobRecord,
    JobEvent,
    JobDocument,
    JobListDocument,
    JobSummary,
    LogTail,
    HelpDocument,
)
# The schema keywords the light reader checks; titles and descriptions are for people.
_SHAPE_KEYS = ("$ref", "anyOf", "const", "enum", "type", "pattern", "properties", "items", "additionalProperties")
SHAPES_FILE = Path(__file__).with_name("document_shapes.json")


# For people, or implied by the light reader's rule that every field is present.
_SHAPE_IGNORED = ("title", "description", "default", "required")


def _trim(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    unknown = set(schema) - {*_SHAPE_KEYS, *_SHAPE_IGNORED}
    if unknown:  # e.g. a new ge=/max_length=: job_files.conform must learn it, or it would accept too much
        raise ValueError(f"job_files.conform does not check {sorted(unknown)}; teach it before using them")
    out: dict[str, Any] = {}
    for key in _SHAPE_KEYS:
        if key not in schema:
            continue
        value = schema[key]
        if key == "properties":  # field name -> shape, in the model's field order (the dump's key order)
            out[key] = {
                name: {**_trim(sub), **({"default": sub["default"]} if "default" in sub else {})}
                for name, sub in value.items()
            }
        elif key in ("anyOf",):
            out[key] = [_trim(option) for option in value]
        elif key in ("items", "additionalProperties"):
            out[key] = _trim(value)
        else:
            out[key] = value
    return out


def shapes() -> str:
    """document_shapes.json: model name -> the JSON shape of its dump, for the LIGHT documents and
    every model they contain (JSON Schema trimmed to types, patterns and the fields' order)."""
    found: dict[str, Any] = {}
    for model in LIGHT:
        schema = model.model_json_schema(ref_template="{model}")
        for name, sub in schema.pop("$defs", {}).items():
            found[name] = _trim(sub)
        found[model.__name__] = _trim(schema)
    return json.dumps(dict(sorted(found.items())), indent=1) + "\n"


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schema")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in schemas().items():
        (out / name).write_text(text)
    SHAPES_FILE.write_text(shapes())
