"""Test helpers shared by the live-state and pipeline lab tests: the CLI, manifests, ssh to hosts.

Everything here drives real programs: the `unidesk` CLI in a subprocess, OpenSSH to the lab hosts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CLI_TIMEOUT = 300


def cli(
    lab: dict, state_dir: Path, *args: str, workspace: Path | None = None, timeout: float = CLI_TIMEOUT
) -> tuple[int, dict]:
    """Run `unidesk --workspace … --state-dir … ARGS` and parse its one JSON document."""
    ws = str(workspace or lab["workspace"])
    proc = subprocess.run(
        [sys.executable, "-m", "unidesk_tui.cli", "--workspace", ws, "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(
            f"no JSON on stdout (rc {proc.returncode}): {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
        ) from None
    return proc.returncode, doc


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
