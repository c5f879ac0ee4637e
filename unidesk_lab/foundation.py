"""Lab fixture: the D601 dev foundation, applied and running after `lab up --seed`.

No registry is reachable, so the images the foundation and the dev code-queue slice declare by a
fixed name (`postgres:16-alpine`, `rancher/mirrored-library-busybox:1.36.1`,
`unidesk-provider-egress:dev`) are one small busybox image built here without Docker (static
busybox and its applet links) and loaded into D601's Docker (where `dev-env prewarm-images` finds
them) and into its k3s containerd. Then the foundation manifest of the sample repository (at the
seeded commit) is applied with `kubectl` on D601's kubeconfig, and the seed waits until postgres-dev
is ready and the migrate Job has succeeded. This is fixture code, not the product's apply path.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import tarfile
import time

from unidesk_lab import daemon as daemons
from unidesk_lab import registry, sample
from unidesk_lab.daemon import LabError
from unidesk_lab.layout import CONTAINERD_NAMESPACE, K3S_HOST, Layout

log = logging.getLogger(__name__)

FIXED_IMAGES: tuple[str, ...] = (
    "postgres:16-alpine",
    "rancher/mirrored-library-busybox:1.36.1",
    "unidesk-provider-egress:dev",
)
WAIT = 60.0  # hang guard: the foundation is up in a few seconds


def busybox_archive(tags: tuple[str, ...]) -> bytes:
    """A docker-archive (what `docker save` writes; `docker load` and `ctr images import` read it)."""
    applets = subprocess.run(
        [str(registry.BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    files: list[tuple[str, bytes | None, int, str | None]] = [
        ("bin", None, 0o755, None),
        ("tmp", None, 0o1777, None),
        ("bin/busybox", registry.BUSYBOX.read_bytes(), 0o755, None),
    ]
    files += [(f"bin/{a}", None, 0o777, "busybox") for a in sorted(set(applets)) if a != "busybox" and "/" not in a]
    layer = registry._layer(files)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {"Entrypoint": None, "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [registry._digest(layer)]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "lab: static busybox stand-in"}],
        },
        sort_keys=True,
    ).encode()
    cfg_hex, layer_hex = registry._digest(config)[7:], registry._digest(layer)[7:]
    manifest = json.dumps(
        [{"Config": f"{cfg_hex}.json", "RepoTags": list(tags), "Layers": [f"{layer_hex}/layer.tar"]}]
    ).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in ((f"{layer_hex}/layer.tar", layer), (f"{cfg_hex}.json", config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _run(argv: list[str], what: str, input: bytes | None = None, env: dict | None = None) -> str:
    proc = subprocess.run(argv, input=input, capture_output=True, env=env)
    if proc.returncode != 0:
        raise LabError(
            f"dev foundation: {what} failed: {(proc.stderr or proc.stdout).decode(errors='replace').strip()[-800:]}"
        )
    return proc.stdout.decode(errors="replace")


def _in_d601(lay: Layout) -> list[str]:
    init = daemons.running_pid(lay, K3S_HOST, "init")
    if init is None:
        raise LabError("dev foundation: D601 is not running")
    return ["nsenter", "-t", str(init), "-m", "-u", "-n", "--"]


def load_images(lay: Layout) -> None:
    """The fixed images into D601's Docker and its k3s containerd."""
    archive = busybox_archive(FIXED_IMAGES)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DOCKER_HOST": f"unix://{lay.docker_socket(K3S_HOST)}"}
    _run(["/usr/bin/docker", "load", "-q"], "docker load on D601", input=archive, env=env)
    _run(
        ["ctr", "-a", str(lay.containerd_socket), "-n", CONTAINERD_NAMESPACE, "images", "import", "-"],
        "ctr images import on D601",
        input=archive,
    )


def kubectl(lay: Layout, *args: str, input: bytes | None = None) -> str:
    return _run(
        [*_in_d601(lay), "kubectl", "--kubeconfig", str(lay.kubeconfig), *args], f"kubectl {args[0]}", input=input
    )


def apply(lay: Layout, commit: str) -> dict:
    """Apply the foundation manifest at `commit`, then wait for postgres-dev and the migrate Job."""
    started = time.monotonic()
    load_images(lay)
    bare = lay.git_root / f"{sample.SAMPLE_REPO}.git"
    text = _run(
        ["git", "--git-dir", str(bare), "show", f"{commit}:{sample.DEV_MANIFESTS['foundation']}"],
        "reading the foundation manifest",
    )
    applied = kubectl(lay, "apply", "--validate=false", "-o", "name", "-f", "-", input=text.encode()).split()
    deadline = time.monotonic() + WAIT
    while True:
        sts, job = json.loads(
            kubectl(
                lay,
                "-n",
                sample.DEV_NAMESPACE,
                "get",
                "statefulset/postgres-dev",
                "job/unidesk-dev-db-migrate",
                "-o",
                "json",
            )
        )["items"]
        ready = (sts.get("status") or {}).get("readyReplicas", 0) >= 1
        done = (job.get("status") or {}).get("succeeded", 0) >= 1
        if (job.get("status") or {}).get("failed", 0) and any(
            c.get("type") == "Failed" for c in job["status"].get("conditions") or []
        ):
            raise LabError(f"dev foundation: the migrate Job failed: {job['status']}")
        if ready and done:
            break
        if time.monotonic() > deadline:
            raise LabError(
                f"dev foundation not running after {WAIT:.0f}s: postgres-dev {sts.get('status')}, migrate "
                f"{job.get('status')}"
            )
        time.sleep(0.2)
    log.info("dev foundation applied (%d objects) and running in %.1fs", len(applied), time.monotonic() - started)
    return {"objects": applied}
