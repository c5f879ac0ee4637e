"""Console test fixtures: a real git workspace at a fixed path (so SHAs and snapshots are stable),
recorded job directories written through the real jobs.py API, and top-level SVG snapshots."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_textual_snapshot
from syrupy.extensions.single_file import SingleFileSnapshotExtension

from tests.conftest import catalog_doc, git, service_repo
from unidesk_tui import jobs
from unidesk_tui.documents import ErrorItem, FileSourceDoc, JobRecord, JobResult, PlanItem, StepRecord
from unidesk_tui.model import JOB_ACTIVE
from unidesk_tui.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = REPO_ROOT / "snapshots"
# The repo URL every manifest names: fixed, so manifest blobs and commits (on screen in env mode)
# are the same in every run; git maps it to the run's own directory (url.<base>.insteadOf).
REPO_BASE = "file:///unidesk-console-fixture/"
FIXED_NOW = 1_795_766_400.0  # 2026-11-27 08:00:00 UTC: the console's injected clock
SIZE = (120, 36)
DATE = "1795700000 +0000"


class TopLevelSVGExtension(pytest_textual_snapshot.SVGImageExtension):
    """Store console snapshots in the repository's top-level snapshots/ folder."""

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(SNAPSHOTS / test_location.basename)


@pytest.fixture(autouse=True)
def _snapshots_in_top_level(monkeypatch: pytest.MonkeyPatch) -> None:
    # snap_compare looks the extension class up at call time.
    monkeypatch.setattr(pytest_textual_snapshot, "SVGImageExtension", TopLevelSVGExtension)
    assert issubclass(TopLevelSVGExtension, SingleFileSnapshotExtension)


@dataclass
class ConsoleWorld:
    root: Path
    workspace: Path
    state_dir: Path
    service_url: str
    commits: list[str]  # pushed to the service remote, oldest first
    ports: dict[str, int]  # target id -> ssh port on 127.0.0.1 (nothing listens: unreachable)

    def ws(self) -> Workspace:
        return Workspace.at(self.workspace, self.state_dir)


def _env_branch(ws: Path, environment: str, text: str) -> str:
    blob = git(ws, "hash-object", "-w", "--stdin", input=text.encode())
    tree = git(ws, "mktree", input=f"100644 blob {blob}\tdeploy.json\n".encode())
    sha = git(
        ws,
        "commit-tree",
        tree,
        "-m",
        f"{environment}: desired state",
        env={"GIT_AUTHOR_DATE": DATE, "GIT_COMMITTER_DATE": DATE},
    )
    git(ws, "push", "-q", "--force", "origin", f"{sha}:refs/heads/deploy/{environment}")
    return sha


def build_world(root: Path) -> ConsoleWorld:
    """Build the world under `root`. Set GIT_CONFIG_GLOBAL to `root / "gitconfig"` to use it."""
    remote = root / "remote"
    remote.mkdir(parents=True)
    svc_bare = remote / "sample-service.git"
    commits = service_repo(svc_bare, root / "sample-service", 1_700_000_000)
    url = f"{REPO_BASE}{svc_bare.name}"
    (root / "gitconfig").write_text(f'[url "file://{remote}/"]\n\tinsteadOf = {REPO_BASE}\n')

    ws_bare = remote / "unidesk.git"
    git(remote, "init", "-q", "--bare", str(ws_bare))
    ws = root / "workspace"
    git(root, "clone", "-q", str(ws_bare), str(ws))
    ports = {"main-server": 1, "D601": 3}  # nothing listens: connection refused, at once
    known = root / "known_hosts"
    known.write_text("")
    config = catalog_doc(url, ports=ports, known_hosts=str(known), proxy=False, k3s_service=True)
    (ws / "config.json").write_text(json.dumps(config, indent=2))

    def manifest(entries: list[tuple[str, str]], environment: str | None = None) -> str:
        doc: dict = {"schemaVersion": 1}
        if environment:
            doc["environment"] = environment
        doc["services"] = [{"id": sid, "repo": url, "commitId": sha} for sid, sha in entries]
        return json.dumps(doc, indent=2) + "\n"

    local = [
        ("backend-core", commits[2][:7]),
        ("frontend", commits[1]),
        ("code-queue", commits[2][:10]),
        ("code-queue-mgr", commits[0][:8]),
        ("node-exporter", commits[0][:7]),
    ]
    (ws / "deploy.json").write_text(manifest(local))
    git(ws, "add", "config.json", "deploy.json")
    git(ws, "commit", "-q", "-m", "workspace", env={"GIT_AUTHOR_DATE": DATE, "GIT_COMMITTER_DATE": DATE})
    git(ws, "push", "-q", "origin", "HEAD:refs/heads/master")
    _env_branch(
        ws,
        "dev",
        manifest(
            [
                ("backend-core", commits[2][:7]),
                ("frontend", commits[2][:7]),
                ("code-queue", commits[1][:7]),
                ("code-queue-mgr", commits[1][:7]),
            ],
            "dev",
        ),
    )
    _env_branch(
        ws,
        "prod",
        manifest(
            [("backend-core", commits[1][:7]), ("frontend", commits[1][:7]), ("code-queue", commits[0][:7])], "prod"
        ),
    )
    return ConsoleWorld(root, ws, root / "state", url, commits, ports)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConsoleWorld:
    built = build_world(tmp_path / "world")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(built.root / "gitconfig"))
    return built


# -- recorded jobs, written through the real job store -------------------------------------------


def iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_job(
    world: ConsoleWorld,
    job_id: str,
    *,
    status: str,
    steps: list[StepRecord],
    events: list[tuple[str | None, str | None, str, str]],
    services: list[str] | None = None,
    result: JobResult | None = None,
    environment: str = "file",
    alive: bool = False,
    plan: list[PlanItem] | None = None,
) -> JobRecord:
    """Write job.json and events.jsonl in the world's state dir with jobs.create_job / jobs.EventLog
    (a job of backend-core unless `services` says otherwise).

    `alive` records this test process as the worker, so the store reports the job as running.
    """
    state_dir, workspace = world.state_dir, world.workspace
    pid = os.getpid() if alive else None
    record = JobRecord(
        id=job_id,
        status=status,
        environment=environment,
        source=FileSourceDoc(path=str(workspace / "deploy.json")),
        workspace=str(workspace),
        services=services or ["backend-core"],
        steps=steps,
        result=result,
        plan=plan or [],
        createdAt=iso(FIXED_NOW - 95),
        startedAt=iso(FIXED_NOW - 94),
        endedAt=None if status in JOB_ACTIVE else iso(FIXED_NOW - 10),
        host=jobs.HOST,
        workerPid=pid,
        workerStart=jobs.process_start(pid) if pid else None,
    )
    jobs.create_job(state_dir, record)
    log = jobs.EventLog(state_dir, job_id)
    for service, step, stream, text in events:
        log.append(text, service=service, step=step, stream=stream)
    return record


def step(
    service: str, name: str, status: str, start: float | None = None, seconds: float | None = None, **kw
) -> StepRecord:
    return StepRecord(
        service=service,
        name=name,
        status=status,
        startedAt=iso(FIXED_NOW - start) if start is not None else None,
        endedAt=iso(FIXED_NOW - start + seconds) if start is not None and seconds is not None else None,
        durationMs=int(seconds * 1000) if seconds is not None else None,
        **kw,
    )


@dataclass
class StaleHealth:
    """backend-core wanted at commits[2] runs healthy but its health reports commits[1]: the job's
    verification fails on the health layer (what a recorded failed job shows)."""

    want: str
    old: str

    @property
    def message(self) -> str:
        return (
            f"backend-core: live runtime does not prove {self.want}: health deploy.commit is {self.old} (healthy), "
            f"expected {self.want}"
        )

    def plan(self) -> list[PlanItem]:
        reason = f"running {self.old[:12]}, desired {self.want[:12]}"
        return [PlanItem(id="backend-core", commit=self.want, action="deploy", reason=reason)]

    def result(self) -> JobResult:
        error = ErrorItem(code="verification_failed", message=self.message, service="backend-core")
        return JobResult(ok=False, services={"backend-core": "failed"}, errors=[error])

    def verify_events(self) -> list[tuple[str | None, str | None, str, str]]:
        seen = f"health deploy.commit is {self.old} (healthy), expected {self.want}"
        return [
            ("backend-core", "verify", "stdout", f"verification pending: {seen}"),
            ("backend-core", "verify", "stderr", f"verification_failed: {seen}"),
        ]


def stale_health(world: ConsoleWorld) -> StaleHealth:
    return StaleHealth(want=world.commits[2], old=world.commits[1])
