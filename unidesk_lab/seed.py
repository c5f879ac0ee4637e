"""Lab fixture: run the compose services at the sample repo's OLD commit, so `deploy check` has drift,
and the D601 dev foundation (`unidesk_lab.foundation`), so dev applies have their namespace,
runtime config and database.

For each compose service: `git archive <old>` of the lab remote's bare repo is the build context of
a BuildKit `docker build` on the service's own host (its dockerd socket), stamped with the four
`unidesk.ai/*` labels and recorded as the reconciler records its builds (commit tag and provenance
record, executors/provenance.py); then `docker-compose up -d` with the UNIDESK_DEPLOY_* environment, and the
health answer through the microservice proxy must report the old commit. This is fixture code,
not the product's apply path.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from unidesk_lab import foundation, sample
from unidesk_lab.daemon import LabError
from unidesk_lab.layout import HOSTS, Layout

log = logging.getLogger(__name__)

DOCKER = "/usr/bin/docker"  # Debian's 20.10 client: BuildKit without the buildx plugin
COMPOSE = "/usr/bin/docker-compose"


def _run(argv: list[str], env: dict[str, str], input: bytes | None = None, what: str = "") -> None:
    proc = subprocess.run(argv, input=input, capture_output=True, env={**os.environ, **env})
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()[-15:]
        raise LabError(f"seed: {what} failed (exit {proc.returncode}):\n" + "\n".join(out))


def labels(service_id: str, repo: str, commit: str, dockerfile: str = "Dockerfile") -> dict[str, str]:
    return {
        "unidesk.ai/service-id": service_id,
        "unidesk.ai/source-repo": repo,
        "unidesk.ai/source-commit": commit,
        "unidesk.ai/dockerfile": dockerfile,
    }


def build_image(lay: Layout, host: str, service: dict, repo: str, commit: str) -> None:
    """BuildKit build of `commit` on `host`, context = `git archive` of the commit."""
    archive = subprocess.run(
        ["git", "-C", str(lay.git_root / f"{sample.SAMPLE_REPO}.git"), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    ).stdout
    argv = [
        DOCKER,
        "build",
        "--network",
        "host",
        "--build-arg",
        "BUILDKIT_INLINE_CACHE=1",
        "-t",
        service["image"],
        "-f",
        "Dockerfile",
    ]
    for key, value in labels(service["id"], repo, commit).items():
        argv += ["--label", f"{key}={value}"]
    argv.append("-")
    env = {"DOCKER_HOST": f"unix://{lay.docker_socket(host)}", "DOCKER_BUILDKIT": "1"}
    _run(argv, env, input=archive, what=f"{host}: docker build of {service['id']} at {commit[:12]}")


def record_build(lay: Layout, host: str, service: dict, repo: str, commit: str) -> None:
    """Record the seeded build as the reconciler's build step does (commit tag + the target-side
    record of executors/provenance.py): the lab starts as deployed by this reconciler, so a
    hand-mutated, re-committed seeded service is a provenance-mismatch at once."""
    from executors.provenance import new_record, record_path
    from unidesk_tui.model import Environment

    env = {"DOCKER_HOST": f"unix://{lay.docker_socket(host)}"}
    inspect = subprocess.run(
        [DOCKER, "image", "inspect", "--format", "{{.Id}}", service["image"]],
        capture_output=True,
        env={**os.environ, **env},
    )
    if inspect.returncode != 0:
        raise LabError(f"seed: {host}: {service['image']} not found after its build")
    record = new_record(
        service["id"], Environment.FILE, commit, service["image"], inspect.stdout.decode().strip(), repo
    )
    _run([DOCKER, "tag", record.imageId, record.commitTag], env, what=f"{host}: docker tag {record.commitTag}")
    path = Path(record_path(str(lay.work_dir(host)), record.service, record.scope, commit))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record.to_json())


def compose_up(lay: Layout, host: str, service: dict, repo: str, commit: str) -> None:
    env = {
        "DOCKER_HOST": f"unix://{lay.docker_socket(host)}",
        "UNIDESK_DEPLOY_REPO": repo,
        "UNIDESK_DEPLOY_COMMIT": commit,
        "UNIDESK_DEPLOY_REQUESTED_COMMIT": commit,
    }
    argv = [
        COMPOSE,
        "-p",
        sample.COMPOSE_PROJECT,
        "-f",
        str(lay.compose_file(host)),
        "up",
        "-d",
        "--no-build",
        "--no-deps",
        "--force-recreate",
        service["id"],
    ]
    _run(argv, env, what=f"{host}: compose up {service['id']}")


def health_commit(lay: Layout, service_id: str) -> str | None:
    url = f"{lay.msproxy_url}/api/microservices/{service_id}/health"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return json.loads(resp.read()).get("deploy", {}).get("commit")
    except (urllib.error.URLError, OSError, ValueError):
        return None


_COMPOSE_LOCKS = {h: threading.Lock() for h in HOSTS}  # docker-compose v1 races with itself in one project


def _seed_service(lay: Layout, host: str, service: dict, repo: str, commit: str) -> str:
    build_image(lay, host, service, repo, commit)
    record_build(lay, host, service, repo, commit)
    with _COMPOSE_LOCKS[host]:
        compose_up(lay, host, service, repo, commit)
    return service["id"]


def run(lay: Layout) -> dict:
    """Deploy every compose service at the OLD commit and wait until its health reports it."""
    content = sample.content(lay) or sample.ensure(lay)
    repo, old = content["sampleRepo"], content["old"]
    started = time.monotonic()
    work = [(h, svc) for h in HOSTS for svc in sample.compose_services(h)]
    # every service at once (builds on one daemon share its BuildKit cache), beside the dev foundation
    with ThreadPoolExecutor(len(work) + 1) as pool:
        dev = pool.submit(foundation.apply, lay, old)
        seeded = list(pool.map(lambda hs: _seed_service(lay, hs[0], hs[1], repo, old), work))
        dev.result()
    deadline = time.monotonic() + 20
    pending = set(seeded)
    while pending and time.monotonic() < deadline:
        pending = {sid for sid in pending if health_commit(lay, sid) != old}
        if pending:
            time.sleep(0.2)
    if pending:
        raise LabError(f"seed: health of {sorted(pending)} does not report {old[:12]} through {lay.msproxy_url}")
    log.info("seeded %s at %s in %.1fs", seeded, old[:12], time.monotonic() - started)
    return {"commit": old, "services": seeded}
