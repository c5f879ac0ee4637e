"""The `unidesk` CLI contract: one JSON document on stdout, documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from unidesk_tui.cli import main as cli_main
from unidesk_tui.errors import ErrorCode, ExitCode
from unidesk_tui.planning import exit_code, run_plan
from unidesk_tui.workspace import Workspace


def unidesk(*args: str, cwd: Path | None = None) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "unidesk_tui.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"stdout must hold exactly one JSON document: {proc.stdout!r} / {proc.stderr!r}"
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(lines[0]), proc.stderr


def ws_args(world) -> list[str]:
    return ["--workspace", str(world.workspace), "--state-dir", str(world.root / "state")]


def codes(doc) -> list[str]:
    return [e["code"] for e in doc["errors"]]


# ---- environment mode -------------------------------------------------------------------------


def test_env_plan_reads_the_ref_not_the_working_tree(git_world):
    w = git_world
    manifest = w.manifest(
        [
            {"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[0][:7]},
            {"id": "frontend", "repo": w.service_url, "commitId": w.pushed[1]},
        ],
        environment="dev",
    )
    ref_commit = w.push_env("dev", manifest)
    # A dirty, different working-tree deploy.json must be ignored.
    (w.workspace / "deploy.json").write_text(
        '{"schemaVersion": 1, "services": [{"id": "frontend", "repo": "https://x/y", "commitId": "ffff"}]}'
    )
    rc, doc, _ = unidesk(*ws_args(w), "deploy", "plan", "--env", "dev")
    assert rc == ExitCode.WORK_TO_DO, doc
    assert doc["ok"] is True and doc["errors"] == []
    src = doc["source"]
    assert src["kind"] == "env" and src["ref"] == "origin/deploy/dev" and src["manifestCommit"] == ref_commit
    assert src["manifestBlob"] == git(w.workspace, "rev-parse", f"{ref_commit}:deploy.json")
    env = doc["environment"]
    assert (
        env["namespace"] == "unidesk-dev" and env["providerId"] == "D601-dev" and env["databaseName"] == "unidesk_dev"
    )
    assert len(env["databaseFingerprint"]) == 12
    by_id = {s["id"]: s for s in doc["services"]}
    assert (
        by_id["backend-core"]["commit"] == w.pushed[0] and by_id["backend-core"]["requestedCommit"] == w.pushed[0][:7]
    )
    # dev overrides the deployment: backend-core runs on D601's k3s in dev
    assert by_id["backend-core"]["mode"] == "k3sctl-managed" and by_id["backend-core"]["target"] == "D601"
    assert by_id["frontend"]["commit"] == w.pushed[1]
    assert all(s["live"] is None and s["action"] == "deploy" for s in doc["services"])
    # the plan agrees with apply: frontend is enabled but has no dev override, so apply would refuse it
    assert by_id["backend-core"]["applyEnabled"] is True
    assert by_id["frontend"]["applyEnabled"] is False
    assert (
        "apply refused" in by_id["frontend"]["reason"]
        and "environments.dev is not declared" in by_id["frontend"]["reason"]
    )


def test_env_check_is_the_same_dry_run_plan_and_reports_slice(git_world):
    w = git_world
    manifest = w.manifest(
        [
            {"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[0]},
            {"id": "code-queue-mgr", "repo": w.service_url, "commitId": w.pushed[0]},
        ],
        environment="dev",
    )
    w.push_env("dev", manifest)
    rc, doc, _ = unidesk(*ws_args(w), "deploy", "check", "--env", "dev")
    assert rc == ExitCode.WORK_TO_DO
    by_id = {s["id"]: s for s in doc["services"]}
    assert by_id["backend-core"]["applyEnabled"] is True
    assert by_id["code-queue-mgr"]["applyEnabled"] is False and "not enabled" in by_id["code-queue-mgr"]["reason"]


@pytest.mark.parametrize(("declared", "requested"), [("prod", "dev"), ("dev", "prod"), (None, "dev")])
def test_environment_mismatch(git_world, declared, requested):
    w = git_world
    w.push_env(
        requested,
        w.manifest([{"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[0]}], environment=declared),
    )
    rc, doc, _ = unidesk(*ws_args(w), "deploy", "check", "--env", requested)
    assert rc == ExitCode.ERROR and codes(doc) == [ErrorCode.ENVIRONMENT_MISMATCH]


def test_env_ref_with_extra_files_warns(git_world):
    w = git_world
    w.push_env(
        "prod",
        w.manifest([{"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[2]}], environment="prod"),
        extra_files={"README.md": "x"},
    )
    rc, doc, _ = unidesk(*ws_args(w), "deploy", "plan", "--env", "prod")
    assert doc["ok"] is True and any("README.md" in x for x in doc["warnings"])
    assert doc["environment"]["namespace"] == "unidesk" and doc["services"][0]["applyEnabled"] is False


def test_missing_env_ref(git_world):
    rc, doc, _ = unidesk(*ws_args(git_world), "deploy", "plan", "--env", "prod")
    assert rc == ExitCode.ERROR and codes(doc) == [ErrorCode.ENV_REF_NOT_FOUND]


def test_env_mode_commit_errors_are_reported_per_service(git_world):
    w = git_world
    w.push_env(
        "dev",
        w.manifest(
            [
                {"id": "backend-core", "repo": w.service_url, "commitId": w.unpushed[:8]},
                {"id": "frontend", "repo": w.service_url, "commitId": w.twins[0][:4]},
                {"id": "code-queue", "repo": w.service_url, "commitId": w.pushed[0]},
            ],
            environment="dev",
        ),
    )
    rc, doc, _ = unidesk(*ws_args(w), "deploy", "plan", "--env", "dev")
    assert rc == ExitCode.ERROR
    errs = {(e["code"], e.get("service")) for e in doc["errors"]}
    assert (ErrorCode.COMMIT_NOT_FOUND, "backend-core") in errs
    assert (ErrorCode.COMMIT_AMBIGUOUS, "frontend") in errs
    assert (ErrorCode.UNKNOWN_SERVICE, "code-queue") in errs  # in deploy.json, not in config.json
    assert {s["id"]: s["action"] for s in doc["services"]} == {
        "backend-core": "error",
        "frontend": "error",
        "code-queue": "error",
    }


# ---- file mode (core path; live state is the live layer's, covered by lab tests) ---------------


def test_file_mode_without_live_state_never_claims_noop(git_world):
    w = git_world
    (w.workspace / "deploy.json").write_text(
        w.manifest(
            [
                {"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[2][:5]},
                {"id": "node-exporter", "repo": w.service_url, "commitId": w.pushed[2]},
            ]
        )
    )
    run = run_plan(Workspace.at(w.workspace, w.root / "state"), "plan")
    doc = run.document
    assert doc.ok and doc.source.kind == "file"
    by_id = {s.id: s for s in doc.services}
    assert by_id["backend-core"].action == "deploy" and by_id["backend-core"].live is None
    assert by_id["backend-core"].commit == w.pushed[2]
    assert by_id["node-exporter"].action == "unsupported" and "Dockerfile" in by_id["node-exporter"].reason
    assert exit_code(doc) == ExitCode.WORK_TO_DO


def test_service_filter_and_unknown_service(git_world):
    w = git_world
    (w.workspace / "deploy.json").write_text(
        w.manifest(
            [
                {"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[2]},
                {"id": "frontend", "repo": w.service_url, "commitId": w.pushed[2]},
            ]
        )
    )
    ws = Workspace.at(w.workspace, w.root / "state")
    doc = run_plan(ws, "check", services=["frontend"]).document
    assert [s.id for s in doc.services] == ["frontend"]
    doc = run_plan(ws, "check", services=["nope"]).document
    assert [e.code for e in doc.errors] == [ErrorCode.UNKNOWN_SERVICE] and doc.errors[0].service == "nope"


def test_invalid_manifest_through_the_cli(git_world, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"schemaVersion": 1, "services": [{"id": "x", "repo": "https://h/r", "commitId": "abcd", "port": 8080}]}'
    )
    rc, doc, _ = unidesk(*ws_args(git_world), "deploy", "check", "--file", str(bad))
    assert rc == ExitCode.ERROR
    assert doc["errors"] == [
        {"code": "forbidden_field", "message": doc["errors"][0]["message"], "service": "x", "path": "services[0].port"}
    ]


def test_json_alias_is_the_same_document(git_world):
    w = git_world
    w.push_env(
        "dev", w.manifest([{"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[1]}], environment="dev")
    )
    _, a, _ = unidesk(*ws_args(w), "deploy", "check", "--env", "dev")
    _, b, _ = unidesk(*ws_args(w), "--json", "check", "--env", "dev")
    assert a == b


@pytest.mark.parametrize(
    "argv",
    [
        ["deploy"],
        ["deploy", "nope"],
        ["deploy", "check", "--env", "staging"],
        ["deploy", "check", "--service", "$(id)"],
        ["deploy", "check", "--file", "a", "--env", "dev"],
        ["--json"],
        ["--refresh", "0.1"],
        ["--env", "staging"],
        ["--env", "dev", "deploy", "check"],
        ["--refresh", "2", "deploy", "plan"],
    ],
)
def test_usage_errors_are_json_with_exit_2(argv, tmp_path):
    rc, doc, err = unidesk(*argv, cwd=tmp_path)
    assert rc == ExitCode.USAGE and codes(doc) == [ErrorCode.USAGE] and err
    assert "<Environment" not in doc["errors"][0]["message"], doc  # choices are named as typed: 'dev', 'prod'


def test_missing_config_and_manifest(tmp_path):
    rc, doc, _ = unidesk("--workspace", str(tmp_path), "deploy", "check")
    assert rc == ExitCode.ERROR and codes(doc) == [ErrorCode.MANIFEST_NOT_FOUND]
    (tmp_path / "deploy.json").write_text(
        '{"schemaVersion": 1, "services": [{"id": "a", "repo": "https://h/r", "commitId": "abcd"}]}'
    )
    rc, doc, _ = unidesk("--workspace", str(tmp_path), "deploy", "check")
    assert rc == ExitCode.ERROR and codes(doc) == [ErrorCode.CONFIG_NOT_FOUND]


@pytest.mark.parametrize("argv", [["-h"], ["deploy", "apply", "--help"], ["job", "status", "-h"]])
def test_help_is_a_json_usage_document(argv, capsys):
    """Issue 13: every command prints JSON, -h included."""
    assert cli_main(argv) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["ok"] is True and doc["command"] == "help" and doc["usage"].startswith("usage: ") and err == ""
    assert doc["prog"] == " ".join(["unidesk", *[a for a in argv if not a.startswith("-")]])


# ---- an unusable state dir ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["deploy", "check"], ["deploy", "plan"], ["job", "list"], ["job", "prune", "--keep", "1"]]
)
@pytest.mark.parametrize("kind", ["file", "under-file", "read-only"])
def test_unusable_state_dir_is_a_coded_error_naming_it(tmp_path, command, kind):
    """A state dir that is a file, lies under a file or cannot be written: `state_dir_invalid`, never a traceback."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    state = {"file": afile, "under-file": afile / "state", "read-only": Path("/proc/1")}[kind]
    rc, doc, _ = unidesk("--state-dir", str(state), *command, cwd=tmp_path)
    assert rc == ExitCode.ERROR, doc
    assert codes(doc) == ["state_dir_invalid"], doc
    assert str(state) in doc["errors"][0]["message"]
    if kind != "read-only":  # trial 2: it said "File exists" (mkdir's word), not what is wrong
        assert f"{afile} is not a directory" in doc["errors"][0]["message"], doc


# ---- arguments that are not UTF-8 -------------------------------------------------------------------

BAD = os.fsdecode(b"/tmp/\xff.json")  # how Python hands a non-UTF-8 argument over (PEP 383)


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--workspace", os.fsdecode(b"/tmp/\xed\xa0\x80"), "deploy", "check"], "--workspace"),
        (["--state-dir", BAD, "job", "list"], "--state-dir"),
        (["deploy", "plan", "--file", BAD], "--file"),
        (["deploy", "plan", "--out", BAD], "--out"),
        (["deploy", "apply", "--plan", BAD], "--plan"),
        (["deploy", "apply", "--file=" + BAD], "--file"),
        (["job", "status", BAD], "JOB_ID"),
        (["job", "cancel", BAD], "JOB_ID"),
        (["dev-env", "validate", "--manifest", BAD], "--manifest"),
        (["lab", "status", "--dir", BAD], "--dir"),
    ],
)
def test_a_non_utf8_argument_is_a_usage_error_naming_the_option(argv, option, tmp_path):
    """Issue 13: a path (or id) that is not UTF-8 cannot go into a JSON document; it is refused as
    `usage`, naming the option, before anything runs (it was internal_error)."""
    rc, doc, _ = unidesk(*argv, cwd=tmp_path)
    assert rc == ExitCode.USAGE and codes(doc) == [ErrorCode.USAGE], doc
    message = doc["errors"][0]["message"]
    assert option in message and "UTF-8" in message, message
    assert not (tmp_path / ".state").exists()  # refused before anything ran
