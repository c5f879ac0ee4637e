"""`dev-env prewarm-images` on the lab's D601: a real job imports the foundation images from D601's
Docker into its containerd (read back with ctr on D601); a missing image fails the job by name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers_live import cli, job_status, service, ssh, wait_job  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.slow]

D601 = "D601"
POSTGRES, BUSYBOX = "postgres:16-alpine", "rancher/mirrored-library-busybox:1.36.1"
IN_CONTAINERD = {
    POSTGRES: "docker.io/library/postgres:16-alpine",
    BUSYBOX: "docker.io/rancher/mirrored-library-busybox:1.36.1",
}


def d601(lab) -> dict:
    return next(t for t in json.loads(Path(lab["config"]).read_text())["targets"] if t["id"] == D601)


def ctr(lab, *args: str, check: bool = True):
    k3s = d601(lab)["k3s"]
    return ssh(lab, D601, ["ctr", "-a", k3s["containerdSocket"], "-n", k3s["containerdNamespace"], *args], check=check)


def containerd_images(lab) -> list[str]:
    return ctr(lab, "images", "ls", "-q").stdout.decode().split()


@pytest.fixture
def foundation_images(lab):
    """Both foundation names tagged on D601's Docker (from a sample service image), absent from containerd."""
    source = service(lab, "d518-worker")["build"]["image"]
    if ssh(lab, D601, ["docker", "image", "inspect", source], check=False).returncode != 0:
        ssh(lab, D601, ["docker", "load"], input=ssh(lab, "D518", ["docker", "save", source]).stdout)
    for name in (POSTGRES, BUSYBOX):
        ssh(lab, D601, ["docker", "tag", source, name])
        ctr(lab, "images", "rm", IN_CONTAINERD[name], check=False)
    yield source
    for name in (POSTGRES, BUSYBOX):
        ssh(lab, D601, ["docker", "rmi", name], check=False)


def test_prewarm_imports_the_foundation_images_into_containerd(lab, foundation_images, tmp_path):
    state = tmp_path / "state"
    rc, doc = cli(lab, state, "dev-env", "prewarm-images")
    assert rc == 0 and doc["ok"] is True and doc["jobId"] and doc["target"] == D601, doc
    status = wait_job(lab, state, doc["jobId"])
    job = status["job"]
    assert job["status"] == "succeeded" and job["command"] == "dev-env prewarm-images", job
    assert [s["name"] for s in job["steps"]] == ["k3s-preflight"] + [
        f"{step} {image}" for image in (POSTGRES, BUSYBOX) for step in ("docker-image", "k3s-import", "k3s-verify")
    ]
    assert all(s["status"] == "succeeded" for s in job["steps"]), job["steps"]
    texts = [e["text"] for e in status["log"]["events"]]
    for image in (POSTGRES, BUSYBOX):
        assert any(t.startswith(f"prewarm_docker_image={image} id=sha256:") for t in texts)
        assert any(t.startswith(f"k3s_image_present={IN_CONTAINERD[image]} ") for t in texts)
    # read back on D601 with ctr: both in containerd, and no tmp tarball left behind
    present = containerd_images(lab)
    assert IN_CONTAINERD[POSTGRES] in present and IN_CONTAINERD[BUSYBOX] in present, present
    left = ssh(lab, D601, ["find", d601(lab)["workDir"], "-name", "prewarm-*"]).stdout.decode().split()
    assert left == [], left


def test_prewarm_fails_naming_an_image_missing_from_docker(lab, foundation_images, tmp_path):
    ssh(lab, D601, ["docker", "rmi", BUSYBOX])
    rc, doc = cli(lab, tmp_path / "state", "dev-env", "prewarm-images", "--wait")
    assert rc != 0 and doc["ok"] is False and doc["status"] == "failed", doc
    assert [e["code"] for e in doc["errors"]] == ["image_not_found"] and BUSYBOX in doc["errors"][0]["message"], doc
    status = job_status(lab, tmp_path / "state", doc["jobId"])
    steps = {s["name"]: s for s in status["job"]["steps"]}
    assert steps[f"k3s-verify {POSTGRES}"]["status"] == "succeeded"
    assert (
        steps[f"docker-image {BUSYBOX}"]["status"] == "failed"
        and steps[f"docker-image {BUSYBOX}"]["code"] == "image_not_found"
    )
    assert steps[f"k3s-import {BUSYBOX}"]["status"] == "skipped"
    assert IN_CONTAINERD[BUSYBOX] not in containerd_images(lab)
