"""`job status`, `job list` and `--help` answer without pydantic (job_files.py), and print exactly
what the pydantic documents print: compared byte for byte on real jobs run by the real engine and
detached worker (tests/apply_workload.py), in every status; records the light reader does not
take as is go to the typed store and still print the same. The fast paths import none of the
heavy modules (checked in a fresh interpreter through the CLI's entry point, and the installed
`unidesk` console script answers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import test_apply
from tests.conftest import job_record, wait_for
from tests.test_apply import run_to_end, set_behaviour, start
from unidesk_tui import job_files, jobs
from unidesk_tui.cli import build_parser
from unidesk_tui.cli import main as cli_main
from unidesk_tui.documents import HelpDocument, JobDocument, JobListDocument, JobSummary
from unidesk_tui.workspace import Workspace

workload = test_apply.workload
ws = test_apply.ws

TAILS = (0, 1, 300, 30000)


def typed_status(state: Path, job_id: str, tail_bytes: int) -> str:
    """What `job status` printed before the light reader: the pydantic document."""
    return JobDocument(
        ok=True, job=jobs.load_job(state, job_id), log=jobs.tail(state, job_id, tail_bytes)
    ).model_dump_json()


def typed_list(state: Path) -> str:
    keys = JobSummary.model_fields
    summaries = [JobSummary(**{k: getattr(r, k) for k in keys}) for r in jobs.list_jobs(state)]
    return JobListDocument(ok=True, jobs=summaries).model_dump_json()


def assert_light_equals_typed(state: Path, job_id: str) -> None:
    for n in TAILS:
        light = job_files.status_text(state, job_id, n)
        assert light is not None, f"the light reader refused job {job_id} (tail {n})"
        assert light == typed_status(state, job_id, n)


def cli_out(capsys, ws: Workspace, *argv: str) -> str:
    assert cli_main(["--workspace", str(ws.root), "--state-dir", str(ws.state_dir), *argv]) == 0
    return capsys.readouterr().out.rstrip("\n")


def test_light_status_and_list_equal_the_pydantic_documents_in_every_job_status(ws, git_world, workload, capsys):
    state = ws.state_dir
    seen: dict[str, str] = {}

    # succeeded, with an operator; its log gets text JSON escapes differently from Python if anywhere
    ok = run_to_end(ws)
    assert ok.status == "succeeded" and ok.operator is not None
    jobs.EventLog(state, ok.id).append('tricky "quotes" \\ back\tslash \x01\x1f\x7f é ☃ \u2028 𝄞', step="verify")
    seen[ok.id] = "succeeded"

    # failed, its previous version restored and re-verified (result.restored)
    (workload / "backend-core.commit").write_text(git_world.pushed[-2])
    set_behaviour(workload, rollout="stale")
    restored = run_to_end(ws, force=True)
    assert restored.status == "failed" and restored.result.restored is not None
    seen[restored.id] = "failed"

    # failed in its build (an error code on a step)
    set_behaviour(workload, build="fail")
    failed = run_to_end(ws, force=True)
    assert failed.status == "failed" and failed.steps[1].code == "build_failed"
    seen[failed.id] = "failed"

    # running (its worker alive), then cancelled
    set_behaviour(workload, build="sleep")
    running = start(ws, force=True)
    wait_for(lambda: (workload / "backend-core.building").exists(), "the build to start")
    assert jobs.load_job(state, running.jobId).status == "running"
    assert_light_equals_typed(state, running.jobId)
    assert job_files.list_text(state) == typed_list(state)
    assert jobs.cancel(state, running.jobId, wait=10).status == "cancelled"
    seen[running.jobId] = "cancelled"

    # interrupted (its worker killed), and the next job's warnings say it took the lock over
    (workload / "backend-core.building").unlink(missing_ok=True)
    doomed = start(ws, force=True)
    wait_for(lambda: (workload / "backend-core.building").exists(), "the build to start")
    os.kill(jobs.load_job(state, doomed.jobId).workerPid, signal.SIGKILL)
    wait_for(lambda: jobs.load_job(state, doomed.jobId).status == "interrupted", "the job to read as interrupted")
    seen[doomed.jobId] = "interrupted"
    set_behaviour(workload)
    taker = run_to_end(ws, force=True)
    assert taker.status == "succeeded" and any("took over" in w for w in taker.warnings)
    seen[taker.id] = "succeeded"

    # dry run
    dry = run_to_end(ws, dry_run=True, force=True)
    seen[dry.id] = dry.status

    assert {jobs.load_job(state, j).status for j in seen} == {"succeeded", "failed", "cancelled", "interrupted"}
    for job_id in seen:
        assert_light_equals_typed(state, job_id)
        assert cli_out(capsys, ws, "job", "status", job_id) == typed_status(state, job_id, 30000)
    listed = job_files.list_text(state)
    assert listed is not None and listed == typed_list(state)
    assert cli_out(capsys, ws, "job", "list") == listed
    assert [j["id"] for j in json.loads(listed)["jobs"]] == sorted(seen, reverse=True)


def test_records_the_light_reader_does_not_take_go_to_the_typed_store(ws, workload, capsys):
    state = ws.state_dir
    rec = run_to_end(ws)
    path = jobs.job_dir(state, rec.id) / "job.json"
    written = json.loads(path.read_text())

    # written before `operator` and `noRestore` existed: pydantic fills their defaults
    older = {k: v for k, v in written.items() if k not in ("operator", "noRestore")}
    path.write_text(json.dumps(older, indent=2))
    assert job_files.status_text(state, rec.id, 300) is None and job_files.list_text(state) is None
    assert cli_out(capsys, ws, "job", "status", rec.id) == typed_status(state, rec.id, 30000)
    assert json.loads(cli_out(capsys, ws, "job", "list"))["jobs"][0]["operator"] is None
    assert cli_out(capsys, ws, "job", "list") == typed_list(state)

    # a float in free-form evidence: json and pydantic spell some floats differently
    floats = {
        **written,
        "plan": [{**written["plan"][0], "live": {**written["plan"][0]["live"], "evidence": {"x": 1e-7}}}],
    }
    path.write_text(json.dumps(floats))
    assert job_files.status_text(state, rec.id, 300) is None
    assert cli_out(capsys, ws, "job", "status", rec.id) == typed_status(state, rec.id, 30000)

    # a running job whose worker is gone: only the typed store records it as interrupted
    gone = {**written, "status": "running", "endedAt": None, "workerPid": 999999999, "workerStart": 1}
    path.write_text(json.dumps(gone))
    assert job_files.status_text(state, rec.id, 300) is None
    doc = json.loads(cli_out(capsys, ws, "job", "status", rec.id))
    assert doc["job"]["status"] == "interrupted" and json.loads(path.read_text())["status"] == "interrupted"
    assert_light_equals_typed(state, rec.id)  # recorded: the light reader takes it now

    # a value of the wrong type, a field pydantic does not know, an unknown job: the typed answers
    for broken in ({**written, "dryRun": "no"}, {**written, "extra": 1}):
        path.write_text(json.dumps(broken))
        assert job_files.status_text(state, rec.id, 300) is None
    assert job_files.status_text(state, "20260101T000000Z-abcdef", 300) is None
    assert job_files.status_text(state, "not-a-job", 300) is None


def test_help_equals_the_pydantic_help_document(capsys):
    for argv in (["--help"], ["job", "status", "--help"], ["deploy", "apply", "-h"], ["lab", "--help"]):
        assert cli_main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["command"] == "help"
        assert job_files.help_text(out["prog"], out["usage"]) == HelpDocument(**out).model_dump_json()
    assert "job" in build_parser().format_help()


HEAVY = (
    "pydantic",
    "pydantic_core",
    "asyncssh",
    "textual",
    "rich",
    "git",
    "yaml",
    "aiohttp",
    "kubernetes_asyncio",
    "unidesk_tui.documents",
    "unidesk_tui.model",
    "unidesk_tui.catalog",
    "unidesk_tui.jobs",
)
# Runs the installed console script's entry point and reports which heavy modules it loaded.
PROBE = """
import io, json, sys
from contextlib import redirect_stdout
from unidesk_tui.cli import main
out = io.StringIO()
with redirect_stdout(out):
    code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
print(json.dumps({"code": code, "out": json.loads(out.getvalue()), "heavy": heavy, "modules": sorted(sys.modules)}))
"""
# Not heavy, but a tenth of the start each: the fast commands do without them.
FAST_DO_WITHOUT = ("logging", "dataclasses", "inspect")


@pytest.mark.parametrize("command", ["job list", "job status", "--help", "job status --help"])
def test_fast_commands_import_no_heavy_module(tmp_path, command):
    from unidesk_tui.documents import Operator

    state = tmp_path / "state"
    job_id = jobs.new_job_id()
    operator = Operator(user="u", host="h", workspace=str(tmp_path))
    jobs.create_job(state, job_record(job_id, status="succeeded", workspace=str(tmp_path), operator=operator))
    jobs.EventLog(state, job_id).append("started")
    argv = ["--state-dir", str(state), *command.replace("status", f"status {job_id}").split()]
    if command.endswith("--help"):
        argv = command.split()
    res = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["code"] == 0 and report["out"]["ok"], report
    assert report["heavy"] == [], f"`unidesk {command}` loaded {report['heavy']}"
    assert not set(FAST_DO_WITHOUT) & set(report["modules"]), f"`unidesk {command}` loads {FAST_DO_WITHOUT}"
    if command == "job status":
        assert report["out"]["job"]["id"] == job_id and report["out"]["log"]["events"][0]["text"] == "started"
    # The installed console script (what operators and CI run) gives the same answer.
    script = subprocess.run(
        [str(Path(sys.executable).with_name("unidesk")), *argv], cwd=tmp_path, capture_output=True, text=True
    )
    assert script.returncode == 0 and json.loads(script.stdout) == report["out"], script.stderr


def test_the_fallback_still_logs_its_warning_on_stderr(tmp_path):
    """job status skips the logging set-up; when it turns to the typed store (a dead worker to
    record as interrupted), the store's warning still reaches stderr in the CLI's format."""
    state = tmp_path / "state"
    job_id = jobs.new_job_id()
    jobs.create_job(state, job_record(job_id, status="running", workspace=str(tmp_path), workerPid=999999999))
    res = subprocess.run(
        [str(Path(sys.executable).with_name("unidesk")), "--state-dir", str(state), "job", "status", job_id],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and json.loads(res.stdout)["job"]["status"] == "interrupted"
    assert f"WARNING unidesk_tui.jobs: job {job_id}: worker pid 999999999 is gone" in res.stderr


def test_the_probe_sees_heavy_modules(tmp_path):
    """The check above would be vacuous if the probe could not see them: `deploy check` loads them."""
    res = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}", "--workspace", str(tmp_path), "deploy", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert "pydantic" in json.loads(res.stdout)["heavy"], res.stdout + res.stderr


def test_a_constraint_the_light_reader_cannot_check_stops_the_shapes_from_being_generated():
    """A field with e.g. ge=0 in a light document would be accepted by job_files as is, where
    pydantic refuses it: generating document_shapes.json (and its freshness test) fails first."""
    from pydantic import Field

    from unidesk_tui import documents

    class Counted(documents._Doc):
        n: int = Field(0, ge=0)

    with pytest.raises(ValueError, match="minimum"):
        documents._trim(Counted.model_json_schema())
