"""Shared fixtures: real git repositories in temporary directories (no lab needed)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.lab.session import lab  # noqa: F401  (the session lab, for tests/lab and tests/reliability)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Lab Author",
    "GIT_AUTHOR_EMAIL": "author@lab.invalid",
    "GIT_COMMITTER_NAME": "Lab Author",
    "GIT_COMMITTER_EMAIL": "author@lab.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent-home",
}


def wait_for(pred, what: str, timeout: float = 300.0, interval: float = 0.1):
    """Poll `pred` until it returns something truthy (returned); fail naming `what` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def job_record(job_id: str | None = None, **kw):
    """A queued job.json record owned by this process; `kw` overrides any field."""
    from unidesk_tui import jobs
    from unidesk_tui.documents import FileSourceDoc, JobRecord

    base = dict(
        id=job_id or jobs.new_job_id(),
        status="queued",
        environment="file",
        source=FileSourceDoc(path="/w/deploy.json"),
        workspace="/w",
        services=["svc"],
        createdAt=jobs.now_iso(),
        host=jobs.HOST,
        workerPid=os.getpid(),
        workerStart=jobs.process_start(os.getpid()),
    )
    return JobRecord(**{**base, **kw})


def git(cwd: Path, *args: str, env: dict | None = None, input: bytes | None = None) -> str:
    out = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, **(env or {})},
        input=input,
        capture_output=True,
        check=True,
    )
    return out.stdout.decode().strip()


def commit_file(repo: Path, name: str, text: str, message: str, date: str | None = None) -> str:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    git(repo, "add", name)
    env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else None
    git(repo, "commit", "-q", "-m", message, env=env)
    return git(repo, "rev-parse", "HEAD")


def _commit_sha(tree: str, parent: str, when: int, message: str) -> str:
    ident = f"{GIT_ENV['GIT_AUTHOR_NAME']} <{GIT_ENV['GIT_AUTHOR_EMAIL']}> {when} +0000"
    body = f"tree {tree}\nparent {parent}\nauthor {ident}\ncommitter {ident}\n\n{message}\n".encode()
    return hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()


def colliding_commits(repo: Path, prefix_len: int = 4) -> tuple[str, str]:
    """Create two commits (same tree and parent, different dates) whose SHAs share a prefix.

    The birthday search runs over computed commit ids, so only the two winners are written.
    """
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    parent = git(repo, "rev-parse", "HEAD")
    seen: dict[str, int] = {}
    when = 1_700_000_000
    while True:
        when += 1
        sha = _commit_sha(tree, parent, when, "twin")
        key = sha[:prefix_len]
        if key in seen:
            made = []
            for t in (seen[key], when):
                date = f"{t} +0000"
                made.append(
                    git(
                        repo,
                        "commit-tree",
                        tree,
                        "-p",
                        parent,
                        "-m",
                        "twin",
                        env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date},
                    )
                )
            assert made[0][:prefix_len] == made[1][:prefix_len]
            return made[0], made[1]
        seen[key] = when


def orphan_branch_commit(repo: Path, files: dict[str, str], message: str) -> str:
    """A parentless commit holding exactly `files` (for deploy/dev and deploy/prod)."""
    entries = []
    for name, text in files.items():
        blob = git(repo, "hash-object", "-w", "--stdin", input=text.encode())
        entries.append(f"100644 blob {blob}\t{name}")
    tree = git(repo, "mktree", input=("\n".join(entries) + "\n").encode())
    return git(repo, "commit-tree", tree, "-m", message)


@dataclass
class GitWorld:
    """A service repo and a UniDesk workspace, each with a bare 'remote' on disk."""

    root: Path
    service_url: str
    service_clone: Path
    pushed: list[str]  # commits on the remote's main, oldest first
    twins: tuple[str, str]  # two pushed commits sharing a 4-hex prefix
    unpushed: str
    workspace: Path
    workspace_remote: Path
    extra: dict = field(default_factory=dict)

    def manifest(self, services: list[dict], environment: str | None = None) -> str:
        doc: dict = {"schemaVersion": 1}
        if environment:
            doc["environment"] = environment
        doc["services"] = services
        return json.dumps(doc, indent=2) + "\n"

    def push_env(self, environment: str, manifest_text: str, extra_files: dict[str, str] | None = None) -> str:
        files = {"deploy.json": manifest_text, **(extra_files or {})}
        sha = orphan_branch_commit(self.workspace, files, f"{environment}: desired state")
        git(self.workspace, "push", "-q", "--force", "origin", f"{sha}:refs/heads/deploy/{environment}")
        return sha


def catalog_doc(
    service_url: str,
    *,
    ports: dict[str, int] | None = None,
    known_hosts: str | None = None,
    proxy: bool = True,
    k3s_service: bool = False,
) -> dict:
    """A small config.json whose hosts are closed loopback ports: a live read fails fast, locally.

    `ports`: target id -> ssh port (main-server 9, D601 7 unless given); `known_hosts`: the targets'
    knownHosts file; `proxy`: a microservice proxy (also on a closed port); `k3s_service`: add
    code-queue, a service in k3s on D601 (the console's catalog).
    """
    ports = ports or {"main-server": 9, "D601": 7}

    def ssh(target: str) -> dict:
        found = {"host": "127.0.0.1", "port": ports[target], "user": "root"}
        return {**found, "knownHosts": known_hosts} if known_hosts else found

    build = {"dockerfile": "Dockerfile", "context": ".", "image": "unidesk-sample:main"}
    code_queue = {
        "id": "code-queue",
        "repository": {"url": service_url},
        "build": build,
        "deployment": {"mode": "k3sctl-managed", "target": "D601"},
        "k8s": {"manifest": "k3s/code-queue.k8s.yaml", "namespace": "unidesk", "deployments": ["code-queue"]},
    }
    return {
        "targets": [
            {"id": "main-server", "role": "main", "ssh": ssh("main-server")},
            {
                "id": "D601",
                "role": "provider",
                "ssh": ssh("D601"),
                "providerId": "D601",
                "egressProxy": "http://127.0.0.1:18789",
                "k3s": {},
            },
        ],
        **({"microserviceProxy": {"url": "http://127.0.0.1:9"}} if proxy else {}),
        "environments": {
            "dev": {
                "namespace": "unidesk-dev",
                "providerId": "D601-dev",
                "target": "D601",
                "database": {"host": "postgres-dev.unidesk-dev.svc.cluster.local", "port": 5432, "name": "unidesk_dev"},
                "applyEnabled": ["backend-core", "frontend", "code-queue"],
            },
            "prod": {
                "namespace": "unidesk",
                "providerId": "D601",
                "target": "D601",
                "database": {"host": "postgres.unidesk.svc.cluster.local", "port": 5432, "name": "unidesk"},
            },
        },
        "microservices": [
            {
                "id": "backend-core",
                "repository": {"url": service_url, "commitId": "0000000"},
                "deployment": {"mode": "unidesk-direct", "target": "main-server"},
                "build": build,
                "compose": {"project": "unidesk", "service": "backend-core"},
                # dev runs its own image in k3s on the dev namespace (an isolated environment apply)
                "environments": {
                    "dev": {
                        "deployment": {"mode": "k3sctl-managed", "target": "D601"},
                        "build": {"image": "unidesk-sample:dev"},
                        "k8s": {
                            "manifest": "k3s/dev/core.k8s.yaml",
                            "namespace": "unidesk-dev",
                            "deployments": ["backend-core-dev"],
                        },
                    }
                },
            },
            {
                "id": "frontend",
                "repository": {"url": service_url},
                "build": build,
                "deployment": {"mode": "unidesk-direct", "target": "main-server"},
                "compose": {"project": "unidesk", "service": "frontend"},
            },
            *([code_queue] if k3s_service else []),
            {
                "id": "code-queue-mgr",
                "repository": {"url": service_url},
                "build": build,
                "deployment": {"mode": "internal-sidecar", "target": "main-server"},
                "compose": {"project": "unidesk", "service": "code-queue-mgr"},
            },
            {
                "id": "node-exporter",
                "image": "docker.io/prom/node-exporter:v1.8.0",
                "deployment": {"mode": "unidesk-direct", "target": "main-server"},
            },
        ],
    }


def service_repo(bare: Path, clone: Path, first_date: int) -> list[str]:
    """A bare service repository and a clone of it, with three commits (v0, v1, v2 of a Dockerfile,
    dated one second apart from `first_date`) pushed to main; their SHAs, oldest first."""
    git(bare.parent, "init", "-q", "--bare", str(bare))
    git(clone.parent, "clone", "-q", str(bare), str(clone))
    commits = [
        commit_file(clone, "Dockerfile", f"FROM scratch\n# v{i}\n", f"v{i}", date=f"{first_date + i} +0000")
        for i in range(3)
    ]
    git(clone, "push", "-q", "origin", "HEAD:refs/heads/main")
    return commits


@pytest.fixture
def git_world(tmp_path: Path) -> GitWorld:
    remote = tmp_path / "remote"
    remote.mkdir()
    svc_bare, clone = remote / "sample.git", tmp_path / "sample"
    pushed = service_repo(svc_bare, clone, 1_600_000_000)
    twins = colliding_commits(clone)
    git(clone, "push", "-q", "origin", f"{twins[0]}:refs/heads/twin-a", f"{twins[1]}:refs/tags/twin-b")
    unpushed = commit_file(clone, "Dockerfile", "FROM scratch\n# local only\n", "unpushed")
    service_url = f"file://{svc_bare}"

    ws_bare = remote / "unidesk.git"
    git(remote, "init", "-q", "--bare", str(ws_bare))
    ws = tmp_path / "workspace"
    git(tmp_path, "clone", "-q", str(ws_bare), str(ws))
    (ws / "config.json").write_text(json.dumps(catalog_doc(service_url), indent=2))
    world = GitWorld(tmp_path, service_url, clone, pushed, twins, unpushed, ws, ws_bare)
    (ws / "deploy.json").write_text(
        world.manifest([{"id": "backend-core", "repo": service_url, "commitId": pushed[-1][:7]}])
    )
    git(ws, "add", "config.json", "deploy.json")
    git(ws, "commit", "-q", "-m", "workspace")
    git(ws, "push", "-q", "origin", "HEAD:refs/heads/master")
    return world
