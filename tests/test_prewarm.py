"""`dev-env prewarm-images` without a lab: its steps, the names containerd gives imported images,
and the coded refusals before any job starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from executors.containerd import containerd_name
from executors.prewarm import FOUNDATION_IMAGES, MODE, PrewarmExecutor
from unidesk_tui.documents import PlanItem
from unidesk_tui.engine import desired_from_plan
from unidesk_tui.model import DesiredService, Environment

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "unidesk" / "config.json"


def test_containerd_names_follow_docker_normalization():
    assert containerd_name("postgres:16-alpine") == "docker.io/library/postgres:16-alpine"
    assert (
        containerd_name("rancher/mirrored-library-busybox:1.36.1")
        == "docker.io/rancher/mirrored-library-busybox:1.36.1"
    )
    assert containerd_name("10.0.0.1:5000/x/y:1") == "10.0.0.1:5000/x/y:1"
    assert containerd_name("ghcr.io/a/b:2") == "ghcr.io/a/b:2"


def test_steps_per_foundation_image_in_order():
    assert FOUNDATION_IMAGES == ("postgres:16-alpine", "rancher/mirrored-library-busybox:1.36.1")
    steps = PrewarmExecutor().steps(DesiredService("dev-foundation-images", "", "", None, MODE, "D601"))
    assert [s.name for s in steps] == ["k3s-preflight"] + [
        f"{k} {i}" for i in FOUNDATION_IMAGES for k in ("docker-image", "k3s-import", "k3s-verify")
    ]
    assert [s.read_only for s in steps if s.name.startswith("k3s-import")] == [False, False]


def test_worker_rebuilds_a_task_item_without_a_microservice():
    from unidesk_tui.catalog import load_catalog

    item = PlanItem(id="dev-foundation-images", mode=MODE, target="D601", action="deploy", reason="prewarm")
    desired = desired_from_plan(load_catalog(EXAMPLE), item, Environment.DEV)
    assert (desired.id, desired.mode, desired.target, desired.microservice) == (
        "dev-foundation-images",
        MODE,
        "D601",
        None,
    )


def run(ws: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "unidesk_tui.cli", "--workspace", str(ws), "--state-dir", str(ws / ".state"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_no_dev_environment_is_refused_before_a_job(tmp_path):
    cfg = json.loads(EXAMPLE.read_text())
    cfg["environments"].pop("dev")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rc, doc = run(tmp_path, "dev-env", "prewarm-images")
    assert rc == 1 and doc["ok"] is False and doc["jobId"] is None
    assert doc["errors"][0]["code"] == "config_invalid" and "environments.dev" in doc["errors"][0]["message"]
    assert not (tmp_path / ".state" / "jobs").exists()


def test_dev_target_without_k3s_is_refused(tmp_path):
    cfg = json.loads(EXAMPLE.read_text())
    target = cfg["environments"]["dev"]["target"]
    for t in cfg["targets"]:
        if t["id"] == target:
            t.pop("k3s", None)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rc, doc = run(tmp_path, "dev-env", "prewarm-images")
    assert (
        rc == 1 and doc["errors"][0]["code"] == "config_invalid" and "targets[].k3s" in doc["errors"][0]["message"]
    ), doc
