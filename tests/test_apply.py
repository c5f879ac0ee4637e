"""`deploy apply` end to end on real git repositories: the real plan, locks, job store and
detached worker process, running a test workload's steps (tests/apply_workload.py)."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from executors import registry
from tests import apply_workload
from tests.conftest import git, wait_for
from unidesk_tui import jobs, locks
from unidesk_tui import launch as launcher
from unidesk_tui.apply import apply, launch, wait_job
from unidesk_tui.cli import main as cli_main
from unidesk_tui.errors import ErrorCode, ExitCode, UnideskError
from unidesk_tui.jobs_cli import finish_apply
from unidesk_tui.worker import run as worker_run
from unidesk_tui.workspace import Workspace


@pytest.fixture
def workload(tmp_path, monkeypatch):
    """The workload registered for every mode, here and in the worker; restored afterwards."""
    rt = tmp_path / "runtime"
    rt.mkdir()
    monkeypatch.setenv(apply_workload.RUNTIME_ENV, str(rt))
    boot = apply_workload.worker_boot(tmp_path / "worker-boot")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(boot), os.environ.get("PYTHONPATH")])))
    saved = dict(registry.EXECUTORS)
    apply_workload.install()
    yield rt
    registry.EXECUTORS.clear()
    registry.EXECUTORS.update(saved)


@pytest.fixture
def ws(git_world, workload) -> Workspace:
    return Workspace.at(git_world.workspace, git_world.root / "state")


def set_behaviour(rt: Path, **kw) -> None:
    (rt / "behaviour.json").write_text(json.dumps(kw))


def write_manifest(world, *services: tuple[str, str]) -> None:
    (world.workspace / "deploy.json").write_text(
        world.manifest([{"id": s, "repo": world.service_url, "commitId": c} for s, c in services])
    )


def start(ws: Workspace, **kw):
    doc = apply(ws, read_live=apply_workload.read_live, **kw)
    assert doc.ok, doc.errors
    return doc


def run_to_end(ws: Workspace, **kw):
    doc = start(ws, **kw)
    return wait_job(ws.state_dir, doc.jobId, poll=0.05)


def events(ws: Workspace, job_id: str) -> list:
    return jobs.read_events(ws.state_dir, job_id)[0]


def codes(doc) -> list[str]:
    return [e.code for e in doc.errors]


def job_dirs(ws: Workspace) -> list[str]:
    root = jobs.jobs_root(ws.state_dir)
    return sorted(os.listdir(root)) if root.exists() else []


# ---- success, noop, force, dry run --------------------------------------------------------------


def test_apply_runs_every_step_in_a_detached_worker(ws, git_world, workload):
    rec = run_to_end(ws)
    assert rec.status == "succeeded", rec.result
    commit = git_world.pushed[-1]
    assert (workload / "backend-core.commit").read_text() == commit
    assert [(s.name, s.status) for s in rec.steps] == [
        ("inspect", "succeeded"),
        ("build", "succeeded"),
        ("rollout", "succeeded"),
        ("verify", "succeeded"),
    ]
    assert all(s.startedAt and s.endedAt and s.durationMs is not None and s.events >= 1 for s in rec.steps)
    assert rec.workerPid != os.getpid() and rec.result.ok and rec.result.services == {"backend-core": "succeeded"}
    assert rec.plan[0].commit == commit and rec.source.kind == "file"
    evs = events(ws, rec.id)
    assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
    assert any(e.step == "build" and e.stream == "stdout" and commit[:12] in e.text for e in evs)
    wait_for(lambda: locks.read_lock(ws.state_dir, "file", "backend-core") is None, "the lock released at the end")


def test_second_apply_of_the_same_commit_is_a_skipped_noop_and_force_redeploys(ws, workload):
    assert run_to_end(ws).status == "succeeded"
    (workload / "backend-core.image").unlink()
    rec = run_to_end(ws)
    assert rec.status == "succeeded" and rec.plan[0].action == "noop"
    assert [(s.name, s.status) for s in rec.steps] == [("noop", "skipped")]
    assert rec.result.services == {"backend-core": "skipped"}
    assert not (workload / "backend-core.image").exists()
    forced = run_to_end(ws, force=True)
    assert forced.status == "succeeded" and forced.plan[0].action == "deploy" and forced.force
    assert (workload / "backend-core.image").exists()


def test_modules_planted_in_the_workspace_or_state_dir_are_not_imported_by_the_worker(ws, workload):
    marker = workload / "planted-imported"
    ws.state_dir.mkdir(parents=True, exist_ok=True)
    planted = f"open({str(marker)!r}, 'a').write(__file__ + '\\n')\n"
    for where in (ws.root, ws.state_dir):  # the workspace, and the worker's cwd
        (where / "pydantic.py").write_text(planted + "raise ImportError('planted')\n")
        (where / f"{apply_workload.PLANTED_MODULE}.py").write_text(planted)
    set_behaviour(workload, build="import-planted")
    rec = run_to_end(ws)
    assert rec.status == "succeeded", rec.result
    assert any(f"{apply_workload.PLANTED_MODULE} not importable" in e.text for e in events(ws, rec.id))
    assert not marker.exists(), marker.read_text()


def test_dry_run_records_the_steps_it_would_run_and_changes_nothing(ws, workload):
    rec = run_to_end(ws, dry_run=True)
    assert rec.status == "succeeded" and rec.dryRun
    assert [(s.name, s.status) for s in rec.steps] == [
        ("inspect", "succeeded"),
        ("build", "skipped"),
        ("rollout", "skipped"),
        ("verify", "skipped"),
    ]
    assert all(s.message == "dry run: would run" for s in rec.steps[1:])
    assert rec.result.services == {"backend-core": "dry-run"}
    assert not (workload / "backend-core.commit").exists() and not (workload / "backend-core.image").exists()
    assert rec.locks == [] and locks.read_lock(ws.state_dir, "file", "backend-core") is None
    assert any("dry run: would run build" in e.text for e in events(ws, rec.id))


# ---- plan-bound apply ----------------------------------------------------------------------------


def _saved_plan(ws: Workspace, path: Path):
    from unidesk_tui import plan_binding
    from unidesk_tui.documents import PlanRequest
    from unidesk_tui.planning import run_plan

    run = run_plan(ws, "plan", read_live=apply_workload.read_live)
    saved = plan_binding.bind(run.document, run.catalog, PlanRequest(), ws.root)
    plan_binding.write(path, saved)
    return plan_binding.read(path)


def test_a_saved_plan_applies_while_its_facts_hold_and_is_stale_once_live_moves(ws, git_world, workload, tmp_path):
    saved = _saved_plan(ws, tmp_path / "plan.json")
    assert saved.facts["backend-core"]["live.state"] == "missing" and saved.plan.services[0].action == "deploy"
    doc = apply(ws, saved=saved, read_live=apply_workload.read_live)
    assert doc.ok, doc.errors
    assert wait_job(ws.state_dir, doc.jobId, poll=0.05).status == "succeeded"

    # the same plan again: the live state it rests on has moved (missing -> the commit it deployed)
    before = job_dirs(ws)
    stale = apply(ws, saved=saved, read_live=apply_workload.read_live)
    assert not stale.ok and set(codes(stale)) == {ErrorCode.PLAN_STALE} and stale.jobId is None
    paths = {e.path for e in stale.errors}
    assert {
        "services.backend-core.live.state",
        "services.backend-core.live.commit",
        "services.backend-core.action",
    } <= paths
    commit = git_world.pushed[-1]
    assert any(f"live.commit was null when planned, now {commit[:12]}" in e.message for e in stale.errors)
    assert job_dirs(ws) == before  # nothing ran


def test_a_saved_plan_refuses_another_workspace_and_an_edited_file(ws, workload, tmp_path):
    from unidesk_tui import plan_binding

    path = tmp_path / "plan.json"
    saved = _saved_plan(ws, path)
    other = Workspace.at(tmp_path, ws.state_dir)
    assert [e.path for e in plan_binding.differences(saved, saved.facts, other.root)] == ["workspace"]
    data = json.loads(path.read_text())
    data["facts"]["backend-core"]["commit"] = "0" * 40
    path.write_text(json.dumps(data))
    with pytest.raises(UnideskError) as err:
        plan_binding.read(path)
    assert err.value.problems[0].code == ErrorCode.PLAN_INVALID and "edited" in err.value.problems[0].message
    path.write_text("{}")
    with pytest.raises(UnideskError) as err:
        plan_binding.read(path)
    assert err.value.problems[0].code == ErrorCode.PLAN_INVALID


# ---- refused before anything runs ---------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_prod_apply_is_refused_in_the_apply_path(ws, git_world, dry_run):
    git_world.push_env(
        "prod",
        git_world.manifest(
            [{"id": "backend-core", "repo": git_world.service_url, "commitId": git_world.pushed[0]}], environment="prod"
        ),
    )
    doc = apply(ws, env="prod", dry_run=dry_run, read_live=apply_workload.read_live)
    assert not doc.ok and codes(doc) == [ErrorCode.PROD_APPLY_DISABLED] and doc.jobId is None
    assert job_dirs(ws) == []


def test_launch_and_the_worker_refuse_prod_too(ws, workload):
    rec = run_to_end(ws, dry_run=True)
    catalog = jobs.job_dir(ws.state_dir, rec.id) / jobs.CATALOG_FILE
    with pytest.raises(UnideskError) as err:
        launch(ws, None, rec.plan, rec.steps, lock_env="prod", source=rec.source)
    assert err.value.problems[0].code == ErrorCode.PROD_APPLY_DISABLED
    assert job_dirs(ws) == [rec.id] and locks.read_lock(ws.state_dir, "prod", "backend-core") is None
    # A launch request for prod made by hand: the worker records the refusal and runs no step.
    forged = rec.model_copy(
        update={
            "id": jobs.new_job_id(),
            "environment": "prod",
            "dryRun": False,
            "status": "queued",
            "steps": [s.model_copy(update={"status": "pending", "message": None}) for s in rec.steps],
            "result": None,
            "startedAt": None,
            "endedAt": None,
        }
    )
    worker = launcher._spawn(ws.state_dir, forged.id)
    worker.communicate(launcher.Request(job=forged, catalog=catalog.read_text()).model_dump_json().encode(), timeout=60)
    assert worker.returncode == 1
    done = jobs.load_job(ws.state_dir, forged.id)
    assert done.status == "failed" and [e.code for e in done.result.errors] == [ErrorCode.PROD_APPLY_DISABLED]
    assert {s.status for s in done.steps} == {"skipped"}
    assert not (workload / "backend-core.commit").exists() and not (workload / "backend-core.image").exists()


def test_dev_apply_only_for_the_enabled_slice(ws, git_world, workload):
    w = git_world
    w.push_env(
        "dev",
        w.manifest(
            [
                {"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[1]},
                {"id": "code-queue-mgr", "repo": w.service_url, "commitId": w.pushed[1]},
            ],
            environment="dev",
        ),
    )
    whole = apply(ws, env="dev", read_live=apply_workload.read_live)
    assert (
        not whole.ok and codes(whole) == [ErrorCode.SERVICE_NOT_ENABLED] and whole.errors[0].service == "code-queue-mgr"
    )
    other = apply(ws, env="dev", services=["code-queue-mgr"], read_live=apply_workload.read_live)
    assert codes(other) == [ErrorCode.SERVICE_NOT_ENABLED]
    assert job_dirs(ws) == [] and not (workload / "backend-core.commit").exists()

    rec = run_to_end(ws, env="dev", services=["backend-core"])
    assert rec.status == "succeeded" and rec.environment == "dev"
    assert rec.source.kind == "env" and rec.source.ref == "origin/deploy/dev"
    assert rec.plan[0].mode == "k3sctl-managed" and rec.plan[0].target == "D601"  # the dev override
    assert (workload / "backend-core.commit").read_text() == w.pushed[1]


def test_environment_isolation_is_enforced_by_the_engine_whatever_the_executor(ws, git_world, workload):
    """The test workload's steps run no isolation check of their own; apply() must refuse anyway."""
    w = git_world
    config = json.loads((w.workspace / "config.json").read_text())
    backend = next(m for m in config["microservices"] if m["id"] == "backend-core")
    del backend["environments"]["dev"]["build"]  # the dev build would tag the production image
    (w.workspace / "config.json").write_text(json.dumps(config))
    w.push_env(
        "dev", w.manifest([{"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[1]}], environment="dev")
    )
    doc = apply(ws, env="dev", services=["backend-core"], read_live=apply_workload.read_live)
    assert not doc.ok and codes(doc) == [ErrorCode.ENVIRONMENT_ISOLATION] and doc.errors[0].service == "backend-core"
    assert job_dirs(ws) == [] and not (workload / "backend-core.commit").exists()


def test_a_k3s_only_service_with_a_compose_declaration_is_refused_before_any_job(ws, git_world, workload):
    w = git_world
    config = json.loads((w.workspace / "config.json").read_text())
    config["microservices"][0]["k3sOnly"] = True  # backend-core: compose on the main server
    (w.workspace / "config.json").write_text(json.dumps(config))
    write_manifest(w, ("backend-core", w.pushed[1]))
    doc = apply(ws, read_live=apply_workload.read_live)
    assert not doc.ok and set(codes(doc)) == {ErrorCode.K3S_ONLY_VIOLATION}
    assert sorted(e.path for e in doc.errors) == ["microservices[0].compose", "microservices[0].deployment.mode"]
    assert job_dirs(ws) == [] and not (workload / "backend-core.commit").exists()


def test_unsupported_and_unresolvable_services_are_refused_before_any_job(ws, git_world):
    w = git_world
    write_manifest(w, ("backend-core", w.pushed[0]), ("node-exporter", w.pushed[0]))
    doc = apply(ws, read_live=apply_workload.read_live)
    assert not doc.ok and ErrorCode.UNSUPPORTED_SERVICE in codes(doc)
    write_manifest(w, ("backend-core", w.unpushed))
    doc = apply(ws, read_live=apply_workload.read_live)
    assert codes(doc) == [ErrorCode.COMMIT_NOT_FOUND]
    assert job_dirs(ws) == []


def test_file_mode_refuses_a_manifest_declaring_dev_and_says_to_use_env_dev(ws, git_world, capsys):
    """A file declaring dev used to plan and apply against the production targets."""
    w = git_world
    dev_file = ws.root / "dev-declared.json"
    dev_file.write_text(
        w.manifest([{"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[-1]}], environment="dev")
    )
    doc = apply(ws, file=dev_file, read_live=apply_workload.read_live)
    assert not doc.ok and codes(doc) == [ErrorCode.ENVIRONMENT_MISMATCH], doc.errors
    assert "--env dev" in doc.errors[0].message and doc.errors[0].path == "environment"
    assert job_dirs(ws) == [] and locks.read_lock(ws.state_dir, "file", "backend-core") is None
    args = ["--workspace", str(ws.root), "--state-dir", str(ws.state_dir)]
    assert cli_main([*args, "deploy", "apply", "--file", str(dev_file), "--wait"]) == ExitCode.ERROR
    assert json.loads(capsys.readouterr().out)["errors"][0]["code"] == ErrorCode.ENVIRONMENT_MISMATCH
    # check and plan still read it, and warn; the source says what the file declares
    for command in ("check", "plan"):
        cli_main([*args, "deploy", command, "--file", str(dev_file)])
        plan = json.loads(capsys.readouterr().out)
        assert plan["source"] == {
            "kind": "file",
            "path": str(dev_file),
            "declaredEnvironment": "dev",
            "legacyProductionPath": False,
        }
        assert any('declares environment "dev"' in x and "--env dev" in x for x in plan["warnings"]), plan["warnings"]


def test_file_mode_accepts_a_manifest_declaring_prod_as_the_legacy_production_path(ws, git_world, workload, capsys):
    w = git_world
    write_manifest(w, ("backend-core", w.pushed[-1]))
    doc = json.loads((ws.root / "deploy.json").read_text())
    (ws.root / "deploy.json").write_text(json.dumps({**doc, "environment": "prod"}))
    args = ["--workspace", str(ws.root), "--state-dir", str(ws.state_dir)]
    for command in ("check", "plan"):
        cli_main([*args, "deploy", command])
        plan = json.loads(capsys.readouterr().out)
        assert plan["source"]["legacyProductionPath"] is True and plan["source"]["declaredEnvironment"] == "prod"
        assert any("legacy production path" in x for x in plan["warnings"]), plan["warnings"]
    rec = run_to_end(ws)
    assert rec.status == "succeeded" and rec.environment == "file" and rec.source.legacyProductionPath


# ---- failures end in the right status, logs kept ------------------------------------------------


@pytest.mark.parametrize("how", ["silent", "blank"])
def test_a_step_that_emits_nothing_fails_the_job_with_no_progress(ws, workload, how):
    """Only output is progress: a step emitting only empty lines emitted nothing (issue 13)."""
    set_behaviour(workload, build=how)
    rec = run_to_end(ws)
    assert rec.status == "failed" and codes(rec.result) == [ErrorCode.NO_PROGRESS]
    build = rec.steps[1]
    assert build.status == "failed" and build.events == 0 and build.code == ErrorCode.NO_PROGRESS
    assert [s.status for s in rec.steps[2:]] == ["skipped", "skipped"]
    assert not (workload / "backend-core.commit").exists()
    assert not [e for e in events(ws, rec.id) if not e.text.strip()]  # empty lines are not recorded


def test_build_failure_and_stale_health_fail_with_their_codes_and_keep_logs(ws, workload):
    set_behaviour(workload, build="fail")
    rec = run_to_end(ws)
    assert rec.status == "failed" and codes(rec.result) == [ErrorCode.BUILD_FAILED]
    assert any(e.stream == "stderr" and "exit status 2" in e.text for e in events(ws, rec.id))
    set_behaviour(workload, rollout="stale")
    rec = run_to_end(ws)
    assert rec.status == "failed" and codes(rec.result) == [ErrorCode.VERIFICATION_FAILED]
    assert rec.steps[-1].name == "verify" and rec.steps[-1].status == "failed"
    assert (jobs.job_dir(ws.state_dir, rec.id) / jobs.EVENTS_FILE).stat().st_size > 0


def test_a_step_reaches_its_target_through_the_real_pool(ws, workload):
    set_behaviour(workload, build="session")  # the catalog's main-server is a closed port
    rec = run_to_end(ws)
    assert rec.status == "failed" and codes(rec.result) == [ErrorCode.TARGET_UNREACHABLE]


def test_secrets_never_reach_the_event_log(ws, workload, monkeypatch):
    monkeypatch.setenv("NPM_TOKEN", "npm_s3cr3tvalue42")
    set_behaviour(workload, build="secret")
    rec = run_to_end(ws)
    assert rec.status == "succeeded"
    log_text = (jobs.job_dir(ws.state_dir, rec.id) / jobs.EVENTS_FILE).read_text()
    assert "npm_s3cr3tvalue42" not in log_text and "NPM_TOKEN=***" in log_text and "http://***@git.lab" in log_text


def test_secrets_in_a_step_error_reach_neither_job_json_nor_the_apply_and_status_json(
    ws, workload, monkeypatch, capsys
):
    monkeypatch.setenv("NPM_TOKEN", "npm_s3cr3tvalue42")
    set_behaviour(workload, build="secret-fail")
    doc, code = finish_apply(start(ws), ws, wait=True)
    assert (
        code == ExitCode.ERROR and doc.status == "failed" and [e.code for e in doc.errors] == [ErrorCode.BUILD_FAILED]
    )
    job_dir = jobs.job_dir(ws.state_dir, doc.jobId)
    args = ["--workspace", str(ws.root), "--state-dir", str(ws.state_dir)]
    assert cli_main([*args, "job", "status", doc.jobId]) == 0
    texts = {
        "job.json": (job_dir / jobs.JOB_FILE).read_text(),
        "events": (job_dir / jobs.EVENTS_FILE).read_text(),
        "apply JSON": doc.model_dump_json(),
        "job status JSON": capsys.readouterr().out,
    }
    for name, text in texts.items():
        assert "npm_s3cr3tvalue42" not in text and "s3cr3t" not in text, name
    assert "http://***@git.lab" in texts["job.json"] and "http://***@git.lab" in texts["apply JSON"]
    assert doc.job.steps[1].code == ErrorCode.BUILD_FAILED and "***" in doc.job.steps[1].message


# ---- locks, killed and cancelled workers ---------------------------------------------------------


def test_concurrent_apply_is_locked_a_killed_worker_is_interrupted_and_its_lock_taken_over(ws, workload):
    set_behaviour(workload, build="sleep")
    first = start(ws)
    wait_for(lambda: (workload / "backend-core.building").exists(), "the first job to reach its build")
    held = locks.read_lock(ws.state_dir, "file", "backend-core")
    running = jobs.load_job(ws.state_dir, first.jobId)
    assert running.status == "running" and held.jobId == first.jobId and held.pid == running.workerPid
    assert held.host == jobs.HOST and held.time

    second = apply(ws, read_live=apply_workload.read_live)
    assert not second.ok and codes(second) == [ErrorCode.LOCKED] and first.jobId in second.errors[0].message
    assert len(job_dirs(ws)) == 1

    os.kill(running.workerPid, signal.SIGKILL)
    dead = wait_for(
        lambda: (r := jobs.load_job(ws.state_dir, first.jobId)).status == "interrupted" and r, "interrupted"
    )
    assert dead.steps[1].status == "failed" and dead.steps[1].code == ErrorCode.INTERRUPTED
    assert dead.result.services == {"backend-core": "interrupted"}
    assert any("building" in e.text for e in events(ws, first.jobId))  # its log is kept
    assert jobs.load_job(ws.state_dir, first.jobId).status == "interrupted"  # persisted

    set_behaviour(workload)
    third = start(ws)
    assert any(first.jobId in w and "took over" in w for w in third.warnings)  # in the apply document too
    rec = wait_job(ws.state_dir, third.jobId, poll=0.05)
    assert rec.status == "succeeded"
    assert any(first.jobId in w and "took over" in w for w in rec.warnings)
    assert any("took over" in e.text for e in events(ws, third.jobId))


def test_cancel_stops_the_running_step_names_it_and_releases_the_lock(ws, workload):
    set_behaviour(workload, build="sleep")
    doc = start(ws)
    wait_for(lambda: (workload / "backend-core.building").exists(), "the build to start")
    rec = jobs.cancel(ws.state_dir, doc.jobId, wait=10)
    assert rec.status == "cancelled" and codes(rec.result) == [ErrorCode.CANCELLED]
    assert "backend-core step build" in rec.result.errors[0].message
    assert [s.status for s in rec.steps] == ["succeeded", "cancelled", "skipped", "skipped"]
    wait_for(lambda: locks.read_lock(ws.state_dir, "file", "backend-core") is None, "the worker to release its lock")
    with pytest.raises(UnideskError) as err:  # nothing left to cancel
        jobs.cancel(ws.state_dir, doc.jobId)
    assert err.value.problems[0].code == ErrorCode.JOB_FINISHED and "cancelled" in err.value.problems[0].message


def test_cancel_before_the_worker_runs_runs_no_step(ws, workload):
    """A cancel that lands after the worker recorded the job (launch.accept) but before its steps."""
    dry = run_to_end(ws, dry_run=True)
    catalog = (jobs.job_dir(ws.state_dir, dry.id) / jobs.CATALOG_FILE).read_text()
    job = dry.model_copy(
        update={
            "id": jobs.new_job_id(),
            "dryRun": False,
            "status": "queued",
            "result": None,
            "steps": [s.model_copy(update={"status": "pending", "message": None}) for s in dry.steps],
            "startedAt": None,
            "endedAt": None,
            "warnings": [],
        }
    )
    record, answer = launcher.accept(
        ws.state_dir, job.id, launcher.Request(job=job, catalog=catalog).model_dump_json().encode()
    )
    assert (
        answer.ok
        and record.status == "queued"
        and locks.read_lock(ws.state_dir, "file", "backend-core").jobId == job.id
    )
    rec = jobs.cancel(ws.state_dir, job.id)  # still queued: recorded, nobody signalled
    assert rec.status == "queued" and jobs.cancel_requested(ws.state_dir, job.id)
    assert worker_run(ws.state_dir, job.id) == 1  # the worker goes on and reads the request
    rec = jobs.load_job(ws.state_dir, job.id)
    assert rec.status == "cancelled" and "before any step ran" in rec.result.errors[0].message
    assert all(s.status == "skipped" for s in rec.steps)
    assert not (workload / "backend-core.image").exists()
    assert locks.read_lock(ws.state_dir, "file", "backend-core") is None


def test_a_worker_refused_by_the_target_lock_never_held_the_local_lock(ws, workload):
    """R1-lab found it: with two controllers racing, a worker took its local lock, then the target
    lock refused it and it left no job; CLIs of its state dir refused meanwhile were told "locked by
    job X" for a job X that never came to exist. The target lock comes first now."""
    dry = run_to_end(ws, dry_run=True)
    catalog = (jobs.job_dir(ws.state_dir, dry.id) / jobs.CATALOG_FILE).read_text()
    job = dry.model_copy(
        update={"id": jobs.new_job_id(), "dryRun": False, "status": "queued", "result": None, "warnings": []}
    )
    seen = []

    def target_lock_held_elsewhere(record, catalog_json):
        seen.append(locks.held(ws.state_dir, record.environment, record.services))
        raise UnideskError.of(ErrorCode.LOCKED, "file/backend-core is locked on target main-server by job X")

    record, answer = launcher.accept(
        ws.state_dir,
        job.id,
        launcher.Request(job=job, catalog=catalog).model_dump_json().encode(),
        remote_locks=target_lock_held_elsewhere,
    )
    assert record is None and not answer.ok and [e["code"] for e in answer.errors] == [ErrorCode.LOCKED]
    assert seen == [[]]  # nobody could have been refused in this job's name
    assert locks.read_lock(ws.state_dir, "file", "backend-core") is None
    assert not jobs.job_dir(ws.state_dir, job.id).exists()


def test_starting_a_job_prunes_finished_jobs_beyond_the_configured_cap(ws, workload, capsys):
    cfg = json.loads(ws.config_path.read_text())
    ws.config_path.write_text(json.dumps({**cfg, "jobs": {"keepFinished": 1}}))
    first = run_to_end(ws)
    second = run_to_end(ws, force=True)
    set_behaviour(workload, build="sleep")
    third = start(ws, force=True)
    assert job_dirs(ws) == sorted([second.id, third.jobId])  # the running job and the 1 newest finished
    jobs.cancel(ws.state_dir, third.jobId, wait=10)
    args = ["--workspace", str(ws.root), "--state-dir", str(ws.state_dir)]
    assert cli_main([*args, "job", "prune", "--keep", "0", "--older-than", "1d"]) == 0  # none ended a day ago
    assert json.loads(capsys.readouterr().out)["removed"] == []
    assert cli_main([*args, "job", "prune", "--keep", "0"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "ok": True,
        "command": "job prune",
        "removed": [third.jobId, second.id],
        "kept": [],
        "errors": [],
    }
    assert first.id not in job_dirs(ws) and job_dirs(ws) == []
    assert cli_main([*args, "job", "prune", "--older-than", "7 days"]) == ExitCode.USAGE
    assert [e["code"] for e in json.loads(capsys.readouterr().out)["errors"]] == ["usage"]


def test_a_step_past_its_configured_limit_fails_with_step_timeout(ws, workload):
    cfg = json.loads(ws.config_path.read_text())
    for ms in cfg["microservices"]:
        ms["timeouts"] = {"build": 1}
    ws.config_path.write_text(json.dumps(cfg))
    set_behaviour(workload, build="sleep")
    rec = run_to_end(ws)
    assert rec.status == "failed" and codes(rec.result) == [ErrorCode.STEP_TIMEOUT]
    build = rec.steps[1]
    assert build.status == "failed" and build.code == ErrorCode.STEP_TIMEOUT and 1000 <= build.durationMs < 10000
    assert "backend-core: step build exceeded its limit of 1 s" in build.message and "timeouts.build" in build.message
    assert [s.status for s in rec.steps[2:]] == ["skipped", "skipped"]


def test_a_failed_verification_restores_the_previous_version_and_verifies_it(ws, git_world, workload):
    previous = git_world.pushed[-2]
    (workload / "backend-core.commit").write_text(previous)
    set_behaviour(workload, rollout="stale")  # the rollout leaves the old version: verification fails
    rec = run_to_end(ws)
    assert rec.status == "failed" and codes(rec.result) == [ErrorCode.VERIFICATION_FAILED]
    assert rec.result.restored.model_dump() == {
        "service": "backend-core",
        "commit": previous,
        "verified": True,
        "message": None,
    }
    assert [(s.name, s.status) for s in rec.steps][-3:] == [
        ("verify", "failed"),
        ("restore", "succeeded"),
        ("restore-verify", "succeeded"),
    ]
    assert (workload / "backend-core.commit").read_text() == previous


def test_no_restore_keeps_the_failed_version_and_nothing_recorded_means_nothing_to_restore(ws, git_world, workload):
    set_behaviour(workload, rollout="stale")
    rec = run_to_end(ws)  # nothing ran before: nothing to restore
    assert rec.status == "failed" and rec.result.restored is None and [s.name for s in rec.steps][-1] == "verify"
    assert any("nothing to restore" in e.text for e in events(ws, rec.id))
    (workload / "backend-core.commit").write_text(git_world.pushed[-2])
    rec = run_to_end(ws, no_restore=True)
    assert rec.status == "failed" and rec.noRestore and rec.result.restored is None
    assert any("--no-restore" in e.text for e in events(ws, rec.id))


def test_job_cancel_cli(ws, workload, capsys):
    args = ["--workspace", str(ws.root), "--state-dir", str(ws.state_dir)]
    set_behaviour(workload, build="sleep")
    doc = start(ws)
    wait_for(lambda: (workload / "backend-core.building").exists(), "the build to start")
    assert cli_main([*args, "job", "cancel", doc.jobId]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["command"] == "job cancel" and out["job"]["status"] == "cancelled"
    assert cli_main([*args, "job", "cancel", doc.jobId]) == 1
    assert [e["code"] for e in json.loads(capsys.readouterr().out)["errors"]] == ["job_finished"]
    assert cli_main([*args, "job", "cancel", "20260101T000000Z-abcdef"]) == 1
    assert [e["code"] for e in json.loads(capsys.readouterr().out)["errors"]] == ["job_not_found"]


# ---- --wait exit codes and the job commands ----------------------------------------------------


def test_wait_exits_by_the_job_result(ws, workload):
    doc, code = finish_apply(start(ws), ws, wait=True)
    assert code == ExitCode.OK and doc.ok and doc.status == "succeeded" and doc.job.status == "succeeded"
    set_behaviour(workload, build="fail")
    doc, code = finish_apply(start(ws, force=True), ws, wait=True)
    assert code == ExitCode.ERROR and not doc.ok and doc.status == "failed"
    assert [e.code for e in doc.errors] == [ErrorCode.BUILD_FAILED]
    refused = apply(ws, env="prod")
    assert finish_apply(refused, ws, wait=True)[1] == ExitCode.ERROR


def test_job_status_and_list_commands(ws, workload, capsys, monkeypatch):
    monkeypatch.setenv("USER", "someone-else")
    monkeypatch.setenv("LOGNAME", "someone-else")
    rec = run_to_end(ws)
    args = ["--workspace", str(ws.root), "--state-dir", str(ws.state_dir)]
    assert cli_main([*args, "job", "status", rec.id, "--tail-bytes", "300"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["job"]["id"] == rec.id and doc["job"]["status"] == "succeeded"
    assert doc["log"]["truncated"] and 0 < len(doc["log"]["events"]) < len(events(ws, rec.id))
    assert doc["log"]["events"][-1]["text"] == "job succeeded"
    assert cli_main([*args, "job", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [j["id"] for j in listed["jobs"]] == [rec.id]
    # who ran it: the real user (not $USER), this host, the workspace; in job.json, status and list
    operator = {"user": pwd.getpwuid(os.getuid()).pw_name, "host": socket.gethostname(), "workspace": str(ws.root)}
    assert doc["job"]["operator"] == operator and listed["jobs"][0]["operator"] == operator
    assert json.loads((jobs.job_dir(ws.state_dir, rec.id) / "job.json").read_text())["operator"] == operator
    assert f"operator={operator['user']}@{operator['host']} workspace={ws.root}" in [e.text for e in events(ws, rec.id)]
    assert cli_main([*args, "job", "status", "20200101T000000Z-abcdef"]) == ExitCode.ERROR
    assert json.loads(capsys.readouterr().out)["errors"][0]["code"] == ErrorCode.JOB_NOT_FOUND


def test_cli_apply_refuses_prod_with_a_coded_error(ws, git_world, capsys):
    git(git_world.workspace, "status")  # a real workspace repository
    code = cli_main(
        ["--workspace", str(ws.root), "--state-dir", str(ws.state_dir), "deploy", "apply", "--env", "prod", "--wait"]
    )
    doc = json.loads(capsys.readouterr().out)
    assert (
        code == ExitCode.ERROR
        and doc["command"] == "apply"
        and doc["errors"][0]["code"] == ErrorCode.PROD_APPLY_DISABLED
    )


def test_a_held_lock_is_refused_before_the_planning_modules_load(ws, workload):
    """Issue 13: `locked` comes back at once, not after a plan (fetches, live reads, imports)."""
    set_behaviour(workload, build="sleep")
    first = start(ws)
    wait_for(lambda: (workload / "backend-core.building").exists(), "the first job to reach its build")
    probe = (
        "import json, sys; from unidesk_tui.cli import main; rc = main(sys.argv[1:]); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('asyncssh', 'git') "
        "or m in ('unidesk_tui.planning', 'unidesk_tui.engine', 'unidesk_tui.apply'))), file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, "--workspace", str(ws.root), "--state-dir", str(ws.state_dir), "deploy", "apply"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    doc = json.loads(out.stdout)
    assert [e["code"] for e in doc["errors"]] == [ErrorCode.LOCKED] and first.jobId in doc["errors"][0]["message"]
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []
    jobs.cancel(ws.state_dir, first.jobId, wait=10)


def test_ssh_lost_mid_step_fails_the_step_with_target_unreachable(ws, workload):
    """Issue 13: an asyncssh.ConnectionLost escaping a step is the target's, not internal_error."""
    set_behaviour(workload, build="lost")
    rec = run_to_end(ws)
    assert rec.status == "failed" and codes(rec.result) == [ErrorCode.TARGET_UNREACHABLE]
    assert rec.steps[1].name == "build" and rec.steps[1].code == ErrorCode.TARGET_UNREACHABLE
    assert "connection lost" in rec.steps[1].message
