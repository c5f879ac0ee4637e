"""R5: production and out-of-slice applies are refused, and the runtime is diffed unchanged.
R6: secrets planted in repository URLs, the environment and build output: none reaches a state
file or an output.

The real apply path, CLI, launch handshake and worker run; the runtime is the test workload's
(tests/apply_workload.py), so "unchanged" is a byte-for-byte diff of everything it could touch.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from tests import apply_workload
from tests.conftest import wait_for
from unidesk_tui import jobs
from unidesk_tui import launch as launcher
from unidesk_tui.apply import apply, launch, wait_job
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.jobs_cli import finish_apply
from unidesk_tui.model import JOB_TERMINAL

REPO = Path(__file__).resolve().parents[2]


def snapshot(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for root in roots if root.exists()
            for p in sorted(root.rglob("*")) if p.is_file()}


def cli(ws, *args: str) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "unidesk_tui.cli", "--workspace", str(ws.root), "--state-dir", str(ws.state_dir),
                           *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def codes(errors) -> list[str]:
    return [e.code if hasattr(e, "code") else e["code"] for e in errors]


def test_r5_prod_and_out_of_slice_applies_are_refused_and_change_nothing(ws, git_world, workload, figures):
    w = git_world
    url, sha = w.service_url, w.pushed[1]
    w.push_env("prod", w.manifest([{"id": "backend-core", "repo": url, "commitId": sha}], environment="prod"))
    w.push_env("dev", w.manifest([{"id": "backend-core", "repo": url, "commitId": sha},
                                  {"id": "code-queue-mgr", "repo": url, "commitId": sha}], environment="dev"))
    (workload / "backend-core.commit").write_text(w.pushed[0])  # a running service the refusals must not touch
    (w.workspace / "deploy.json").write_text(w.manifest([{"id": "backend-core", "repo": url, "commitId": sha}], environment="dev"))
    before = snapshot(workload)
    refusals: dict[str, list[str]] = {}
    for dry in (False, True):
        refusals[f"apply --env prod{' --dry-run' if dry else ''}"] = codes(apply(ws, env="prod", dry_run=dry,
                                                                                 read_live=apply_workload.read_live).errors)
    refusals["cli deploy apply --env prod"] = codes(cli(ws, "deploy", "apply", "--env", "prod")[1]["errors"])
    refusals["apply --env dev (out-of-slice service listed)"] = codes(apply(ws, env="dev", read_live=apply_workload.read_live).errors)
    refusals["apply --env dev --service code-queue-mgr"] = codes(
        apply(ws, env="dev", services=["code-queue-mgr"], read_live=apply_workload.read_live).errors)
    refusals["file mode on a manifest declaring dev"] = codes(apply(ws, read_live=apply_workload.read_live).errors)
    dry = apply(ws, env="dev", services=["backend-core"], dry_run=True, read_live=apply_workload.read_live)
    rec = wait_job(ws.state_dir, dry.jobId, poll=0.05)
    try:
        launch(ws, None, rec.plan, rec.steps, lock_env="prod", source=rec.source)
    except UnideskError as exc:
        refusals["launch(lock_env=prod)"] = codes(exc.problems)
    # A launch request for prod made by hand, sent straight to a worker: it records the refusal.
    forged = rec.model_copy(update={"id": jobs.new_job_id(), "environment": "prod", "dryRun": False, "status": "queued",
                                    "result": None, "steps": [s.model_copy(update={"status": "pending"}) for s in rec.steps]})
    catalog = (jobs.job_dir(ws.state_dir, rec.id) / jobs.CATALOG_FILE).read_text()
    worker = launcher._spawn(ws.state_dir, forged.id)
    worker.communicate(launcher.Request(job=forged, catalog=catalog).model_dump_json().encode(), timeout=60)
    done = wait_for(lambda: (r := jobs.load_job(ws.state_dir, forged.id)).status in JOB_TERMINAL and r, "the forged job")
    refusals["forged prod job to the worker"] = codes(done.result.errors)
    expected = {ErrorCode.PROD_APPLY_DISABLED, ErrorCode.SERVICE_NOT_ENABLED, ErrorCode.ENVIRONMENT_MISMATCH}
    changed = sorted(set(before.items()) ^ set(snapshot(workload).items()))
    locks_left = list((ws.state_dir / "locks").glob("*.lock"))
    figures("R5", "production and out-of-slice applies", {
        "attempts": len(refusals), "refused": sum(bool(c) and set(c) <= expected for c in refusals.values()),
        "runtime_files_changed": len(changed), "steps_run_for_prod": sum(s.status not in ("skipped", "pending") for s in done.steps),
        "locks_left": len(locks_left),
    })
    assert all(c and set(c) <= expected for c in refusals.values()), refusals
    assert changed == [] and locks_left == [] and {s.status for s in done.steps} == {"skipped"}


SECRETS = {"url": "S3cretInUrl77", "env": "npm_s3cr3tvalue42", "output": "LabPlainS3cret9"}


def test_r6_planted_secrets_reach_no_state_file_and_no_output(ws, git_world, workload, monkeypatch, figures):
    w = git_world
    monkeypatch.setenv("NPM_TOKEN", SECRETS["env"])
    monkeypatch.setenv("LAB_PLAIN_SECRET", SECRETS["output"])  # printed by the build step
    outputs: list[str] = []
    # In a URL: refused, never echoed.
    bad_url = w.service_url.replace("file://", f"https://builder:{SECRETS['url']}@") + "x"
    (w.workspace / "deploy.json").write_text(w.manifest([{"id": "backend-core", "repo": bad_url, "commitId": w.pushed[1]}]))
    rc, doc, err = cli(ws, "deploy", "plan")
    outputs += [json.dumps(doc), err]
    rc, doc, err = cli(ws, "deploy", "apply")
    outputs += [json.dumps(doc), err]
    assert codes(doc["errors"]) == [ErrorCode.INVALID_VALUE]
    # In the environment and the build output: a succeeding and a failing build.
    (w.workspace / "deploy.json").write_text(w.manifest([{"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[1]}]))
    for how in ("secret", "secret-fail"):
        (workload / "behaviour.json").write_text(json.dumps({"build": how}))
        doc, _ = finish_apply(apply(ws, force=True, read_live=apply_workload.read_live), ws, wait=True)
        outputs.append(doc.model_dump_json())
        rc, status, err = cli(ws, "job", "status", doc.jobId)
        outputs += [json.dumps(status), err]
    rc, listing, err = cli(ws, "job", "list")
    outputs += [json.dumps(listing), err]
    files = [p for p in ws.state_dir.rglob("*") if p.is_file() and "mirrors" not in p.parts]
    leaks = [f"{name} in {p}" for p in files for name, s in SECRETS.items() if s.encode() in p.read_bytes()]
    leaks += [f"{name} in an output" for text in outputs for name, s in SECRETS.items() if s in text]
    masked = sum(p.read_text().count("***") for p in files if p.name == jobs.EVENTS_FILE)  # they were printed, masked
    figures("R6", "planted secrets", {
        "secrets_planted": len(SECRETS), "state_files_scanned": len(files), "outputs_scanned": len(outputs),
        "masked_in_event_logs": masked, "leaks": len(leaks),
    })
    assert leaks == [] and masked >= 4
