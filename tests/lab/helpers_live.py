"""Test helpers shared by the lab tests: the CLI and its jobs, manifests, workspaces, git, ssh to hosts.

Everything here drives real programs: the `unidesk` CLI in a subprocess, git, OpenSSH to the lab hosts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from unidesk_tui.model import JOB_ACTIVE

CLI_TIMEOUT = 300
APPLY_TIMEOUT = 900  # a safety net for `deploy apply --wait` (builds on a loaded machine), not a timing assertion
FULL_LOG = 2_000_000  # `job status --tail-bytes`: the whole event log of any test job

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@lab.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@lab.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def cli_argv(lab: dict, state_dir: Path, *args: str, workspace: Path | None = None) -> list[str]:
    """The argv of `unidesk --workspace … --state-dir … ARGS` (for a test that starts it itself)."""
    ws = str(workspace or lab["workspace"])
    return [sys.executable, "-m", "unidesk_tui.cli", "--workspace", ws, "--state-dir", str(state_dir), *args]


def cli(
    lab: dict, state_dir: Path, *args: str, workspace: Path | None = None, timeout: float = CLI_TIMEOUT
) -> tuple[int, dict]:
    """Run `unidesk --workspace … --state-dir … ARGS` and parse its one JSON document."""
    proc = subprocess.run(
        cli_argv(lab, state_dir, *args, workspace=workspace), capture_output=True, text=True, timeout=timeout
    )
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(
            f"no JSON on stdout (rc {proc.returncode}): {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
        ) from None
    return proc.returncode, doc


def apply(lab: dict, state_dir: Path, manifest: Path, *args: str, workspace: Path | None = None) -> tuple[int, dict]:
    """`deploy apply --file MANIFEST ARGS`: its exit code and document (pass "--wait" to wait for the job)."""
    return cli(
        lab, state_dir, "deploy", "apply", "--file", str(manifest), *args, workspace=workspace, timeout=APPLY_TIMEOUT
    )


def apply_and_wait(
    lab: dict, state_dir: Path, manifest: Path, *args: str, workspace: Path | None = None
) -> tuple[int, dict, list[dict]]:
    """`deploy apply --file MANIFEST --wait ARGS`: exit code, document, and the job's whole event log
    (read back through `job status`). The apply must have started a job."""
    rc, doc = apply(lab, state_dir, manifest, "--wait", *args, workspace=workspace)
    assert doc.get("jobId"), doc
    return rc, doc, job_status(lab, state_dir, doc["jobId"], workspace=workspace)["log"]["events"]


def job_status(
    lab: dict, state_dir: Path, job_id: str, *, workspace: Path | None = None, tail_bytes: int = FULL_LOG
) -> dict:
    """The `job status JOB_ID --tail-bytes N` document; the command must succeed."""
    rc, doc = cli(lab, state_dir, "job", "status", job_id, "--tail-bytes", str(tail_bytes), workspace=workspace)
    assert rc == 0, doc
    return doc


def wait_job(lab: dict, state_dir: Path, job_id: str, *, workspace: Path | None = None, limit: float = 600) -> dict:
    """Poll `job status` until the job has ended; its last document (the bound is a safety net, not a
    timing assertion: the caller asserts the status it expects)."""
    deadline = time.monotonic() + limit
    while True:
        doc = job_status(lab, state_dir, job_id, workspace=workspace)
        if doc["job"]["status"] not in JOB_ACTIVE or time.monotonic() > deadline:
            return doc
        time.sleep(0.5)


def texts(events: list[dict], service: str | None = None, step: str | None = None) -> list[str]:
    """The texts of a job's events (as `job status` prints them), of one service and step if named."""
    return [
        e["text"]
        for e in events
        if (service is None or e.get("service") == service) and (step is None or e.get("step") == step)
    ]


def service_steps(doc: dict, sid: str) -> dict[str, dict]:
    """One service's steps of the job in an apply (or `job status`) document, by name."""
    return {s["name"]: s for s in doc["job"]["steps"] if s["service"] == sid}


def workspace_with(lab: dict, tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    """A workspace `tmp_path/ws` whose config.json is the lab's changed by `edit(cfg)`."""
    ws = tmp_path / "ws"
    ws.mkdir(parents=True)
    cfg = config(lab)
    edit(cfg)
    (ws / "config.json").write_text(json.dumps(cfg))
    return ws


def git(cwd: Path, *args: str) -> str:
    """`git -C CWD ARGS` (a fixed test identity, no system or global config); its stdout, stripped."""
    return subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True, env=GIT_ENV
    ).stdout.strip()


def clone_sample(lab: dict, work: Path) -> Path:
    """A clone of the lab's sample-service repository (from its bare repository) at `work`."""
    subprocess.run(
        ["git", "clone", "-q", str(lab["layout"].git_root / "sample-service.git"), str(work)], check=True, env=GIT_ENV
    )
    return work


def push_variant(work: Path, branch: str, base: str, rel: str, edit: Callable[[str], str], message: str) -> str:
    """Commit `edit` of file `rel` on top of `base` and force-push it to `branch` of the clone's
    origin (a branch of its own: master stays as the session expects); the new commit's SHA."""
    git(work, "checkout", "-q", "-B", branch, base)
    path = work / rel
    path.write_text(edit(path.read_text()))
    git(work, "commit", "-q", "-am", message)
    git(work, "push", "-q", "--force", "origin", f"HEAD:refs/heads/{branch}")
    return git(work, "rev-parse", "HEAD")


def processes(pattern: str) -> list[str]:
    """Command lines matching `pattern` (the lab's hosts share our pid namespace)."""
    out = subprocess.run(["pgrep", "-a", "-f", "--", pattern], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def deploy_stamps(repo: str, commit: str) -> dict[str, str]:
    """The deploy-env stamps a rollout of `commit` gives a compose service (for `compose_up`)."""
    return {"UNIDESK_DEPLOY_REPO": repo, "UNIDESK_DEPLOY_COMMIT": commit, "UNIDESK_DEPLOY_REQUESTED_COMMIT": commit}


def write_manifest(path: Path, repo: str, commits: dict[str, str]) -> Path:
    doc = {"schemaVersion": 1, "services": [{"id": sid, "repo": repo, "commitId": c} for sid, c in commits.items()]}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def ssh(
    lab: dict,
    host: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 120,
    input: bytes | None = None,
) -> subprocess.CompletedProcess:
    """OpenSSH to a lab host (its generated ssh_config verifies the host key)."""
    import shlex

    words = (["env", *(f"{k}={v}" for k, v in env.items())] if env else []) + argv
    proc = subprocess.run(
        ["ssh", "-F", str(lab["sshConfig"]), host, shlex.join(words)], capture_output=True, timeout=timeout, input=input
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"ssh {host} {shlex.join(words)}: rc {proc.returncode}: {proc.stderr.decode(errors='replace')[-1500:]}"
        )
    return proc


def config(lab: dict) -> dict:
    return json.loads(Path(lab["config"]).read_text())


def service(lab: dict, sid: str) -> dict:
    return next(m for m in config(lab)["microservices"] if m["id"] == sid)


def container_label(lab: dict, host: str, container: str, label: str) -> str:
    fmt = '{{index .Config.Labels "' + label + '"}}'
    return ssh(lab, host, ["docker", "inspect", "--format", fmt, container]).stdout.decode().strip()


def compose_container(lab: dict, host: str, project: str, svc: str) -> str:
    out = (
        ssh(
            lab,
            host,
            [
                "docker",
                "ps",
                "-q",
                "--filter",
                f"label=com.docker.compose.project={project}",
                "--filter",
                f"label=com.docker.compose.service={svc}",
            ],
        )
        .stdout.decode()
        .split()
    )
    assert out, f"no running container for {project}/{svc} on {host}"
    return out[0]


def running_commit(lab: dict, sid: str) -> str:
    """The source commit of the image a compose service runs on its target (read with the docker CLI)."""
    ms = service(lab, sid)
    return running_image_commit(lab, ms["deployment"]["target"], ms["compose"]["project"], ms["compose"]["service"])


def running_image_commit(lab: dict, host: str, project: str, svc: str) -> str:
    """The unidesk.ai/source-commit label of the image the service's container runs (via docker CLI)."""
    cid = compose_container(lab, host, project, svc)
    image = ssh(lab, host, ["docker", "inspect", "--format", "{{.Image}}", cid]).stdout.decode().strip()
    fmt = '{{index .Config.Labels "unidesk.ai/source-commit"}}'
    return ssh(lab, host, ["docker", "image", "inspect", "--format", fmt, image]).stdout.decode().strip()


def compose_up(lab: dict, host: str, ms: dict, env: dict[str, str]) -> None:
    """Recreate a compose service by hand on its host (test setup, not the product path)."""
    c = ms["compose"]
    ssh(
        lab,
        host,
        [
            "docker-compose",
            "-p",
            c["project"],
            "-f",
            c["file"],
            "up",
            "-d",
            "--no-build",
            "--no-deps",
            "--force-recreate",
            c["service"],
        ],
        env=env,
    )


def host_snapshot(lab: dict, host: str) -> str:
    """Containers (id, name, image, state, start time) and images of one host's dockerd."""
    ids = ssh(lab, host, ["docker", "ps", "-aq", "--no-trunc"]).stdout.decode().split()
    rows = []
    if ids:
        fmt = "{{.Id}} {{.Name}} {{.Image}} {{.State.Status}} {{.State.StartedAt}} {{.RestartCount}}"
        rows = ssh(lab, host, ["docker", "inspect", "--format", fmt, *ids]).stdout.decode().splitlines()
    images = (
        ssh(lab, host, ["docker", "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"])
        .stdout.decode()
        .splitlines()
    )
    return "\n".join(sorted(rows) + ["--"] + sorted(images))


KUBE_DUMP = """
import json, urllib.request
base = "http://127.0.0.1:6443"
out = {}
for path in ("/apis/apps/v1/deployments", "/api/v1/services", "/api/v1/namespaces", "/api/v1/configmaps"):
    items = json.load(urllib.request.urlopen(base + path, timeout=10))["items"]
    out[path] = sorted((i["metadata"].get("namespace", ""), i["metadata"]["name"], i["metadata"].get("resourceVersion")) for i in items)
print(json.dumps(out, sort_keys=True))
"""


def kube_snapshot(lab: dict) -> str:
    """Every Deployment/Service/Namespace/ConfigMap with its resourceVersion, read on D601 itself."""
    return ssh(lab, "D601", ["python3", "-c", KUBE_DUMP]).stdout.decode()


def kube_request(lab: dict, method: str, path: str, body: dict | None = None) -> dict:
    """One request to D601's API server from D601 itself (test setup)."""
    code = (
        "import json, sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request('http://127.0.0.1:6443' + sys.argv[1], method=sys.argv[2], "
        "data=sys.stdin.buffer.read() or None, headers={'Content-Type': 'application/json'})\n"
        "try:\n    print(urllib.request.urlopen(req, timeout=10).read().decode())\n"
        "except urllib.error.HTTPError as e:\n    print(e.read().decode())\n"
    )
    out = ssh(
        lab, "D601", ["python3", "-c", code, path, method], input=json.dumps(body).encode() if body else b""
    ).stdout.decode()
    return json.loads(out)
