"""Error codes, exit codes and the coded exception: the stable part of the CLI's public API.

Scripts branch on these values; renaming one is a breaking change. `docs/cli.md` lists them and a
test keeps the two in step.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import NamedTuple

# No dataclasses here: every command imports this module, and `job status` must start fast
# (bench/startup.py); dataclasses loads inspect, ast and dis, a tenth of that start.


class ExitCode(IntEnum):
    """Process exit codes of every `unidesk` command."""

    OK = 0  # success; for check/plan: nothing to do
    ERROR = 1  # any coded error
    USAGE = 2  # bad command line
    WORK_TO_DO = 3  # check/plan found drift or unsupported services


class ErrorCode(StrEnum):
    """Stable error codes carried in `errors[].code`."""

    USAGE = "usage"
    MANIFEST_INVALID = "manifest_invalid"
    MANIFEST_NOT_FOUND = "manifest_not_found"
    FORBIDDEN_FIELD = "forbidden_field"
    UNKNOWN_FIELD = "unknown_field"
    INVALID_VALUE = "invalid_value"
    MISSING_FIELD = "missing_field"
    DUPLICATE_SERVICE = "duplicate_service"
    CONFIG_INVALID = "config_invalid"
    CONFIG_NOT_FOUND = "config_not_found"
    ENVIRONMENT_MISMATCH = "environment_mismatch"
    ENVIRONMENT_ISOLATION = "environment_isolation"
    ENV_REF_NOT_FOUND = "env_ref_not_found"
    WORKSPACE_INVALID = "workspace_invalid"
    STATE_DIR_INVALID = "state_dir_invalid"
    UNKNOWN_SERVICE = "unknown_service"
    UNSUPPORTED_SERVICE = "unsupported_service"
    COMMIT_NOT_FOUND = "commit_not_found"
    COMMIT_AMBIGUOUS = "commit_ambiguous"
    REPO_UNREACHABLE = "repo_unreachable"
    PROD_APPLY_DISABLED = "prod_apply_disabled"
    SERVICE_NOT_ENABLED = "service_not_enabled"
    LOCKED = "locked"
    PLAN_STALE = "plan_stale"
    PLAN_INVALID = "plan_invalid"
    JOB_NOT_FOUND = "job_not_found"
    JOB_FINISHED = "job_finished"
    JOB_UNREADABLE = "job_unreadable"
    TARGET_UNREACHABLE = "target_unreachable"
    PROBE_FAILED = "probe_failed"
    PROXY_PROBE_FAILED = "proxy_probe_failed"
    BUILD_FAILED = "build_failed"
    ROLLOUT_FAILED = "rollout_failed"
    VERIFICATION_FAILED = "verification_failed"
    PAUSE_IMAGE_INVALID = "pause_image_invalid"
    K3S_NOT_NATIVE = "k3s_not_native"
    IMAGE_NOT_FOUND = "image_not_found"
    NO_PROGRESS = "no_progress"
    STEP_TIMEOUT = "step_timeout"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    DEV_MANIFEST_INVALID = "dev_manifest_invalid"
    K3S_ONLY_VIOLATION = "k3s_only_violation"
    LAB_FAILED = "lab_failed"
    INTERNAL = "internal_error"


class Problem(NamedTuple):
    """One coded problem; `service` and `path` say where, when known."""

    code: ErrorCode
    message: str
    service: str | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"code": str(self.code), "message": self.message}
        if self.service is not None:
            out["service"] = self.service
        if self.path is not None:
            out["path"] = self.path
        return out


class UnideskError(Exception):
    """Raised for any expected failure; carries every problem found, not only the first."""

    def __init__(self, *problems: Problem) -> None:
        super().__init__(problems[0].message if problems else "error")
        self.problems: list[Problem] = list(problems)

    @classmethod
    def of(cls, code: ErrorCode, message: str, *, service: str | None = None, path: str | None = None) -> UnideskError:
        return cls(Problem(code, message, service=service, path=path))

    def __str__(self) -> str:
        return "; ".join(f"{p.code}: {p.message}" for p in self.problems)


class UsageError(Exception):
    """A command line that cannot be run as given (`usage`, exit 2)."""


def decisive_line(stderr: str | None) -> str:
    """The line of a failed git's stderr that says what went wrong: its first `fatal:`/`error:` line
    (git ends with advice such as "remove the file manually to continue"), else its last line."""
    text = (stderr or "").strip()
    text = text.removeprefix("stderr:").strip().removeprefix("'").removesuffix("'")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "git fetch failed"
