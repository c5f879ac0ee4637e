"""The lab's image registry: Debian's `docker-registry` (distribution v2) beside the git remote.

It runs in the "github" namespace on the wan, plain HTTP on port 5000: main-server and the
operator reach it, providers only through their egress proxy (as with Docker Hub on the real
D601). `seed` pushes, over the registry's HTTP API, two images built here without any Docker:

- `rancher/mirrored-pause:3.6`: FROM scratch, a static pause program compiled from
  `assets/pause/pause.c` (signal handling, child reaping, a pause(2) loop), ENTRYPOINT ["/pause"];
- `rancher/mirrored-pause:fake`: a sleep-based impostor (static busybox, ENTRYPOINT
  ["/bin/sleep", "infinity"]) that the k3s executor must reject.

Layers are built deterministically (fixed mtimes, gzip without a timestamp), so re-seeding pushes
nothing new; the compiled binary is cached under `<lab>/registry/`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import platform
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from unidesk_lab.daemon import Daemon, LabError
from unidesk_lab.layout import GIT, REGISTRY_PORT, Layout
from unidesk_lab.netns import tcp_open

log = logging.getLogger(__name__)

BINARY = "/usr/bin/docker-registry"
PAUSE_SOURCE = Path(__file__).parent / "assets" / "pause" / "pause.c"
BUSYBOX = Path("/bin/busybox")
PAUSE_REPO = "rancher/mirrored-pause"
PAUSE_TAG = "3.6"
FAKE_TAG = "fake"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def root(lay: Layout) -> Path:
    return lay.dir / "registry"


def daemon(lay: Layout) -> Daemon:
    if not Path(BINARY).exists():
        raise LabError(f"{BINARY} is missing: install the Debian package docker-registry")
    base = root(lay)
    (base / "data").mkdir(parents=True, exist_ok=True)
    cfg = base / "config.yml"
    cfg.write_text(
        f"""# lab registry: plain HTTP, no auth, reachable on the wan only
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {base / "data"}
  delete:
    enabled: true
http:
  addr: {lay.git_address}:{REGISTRY_PORT}
"""
    )
    addr = lay.git_address
    return Daemon(
        host=GIT,
        name="registry",
        argv=[BINARY, "serve", str(cfg)],
        ready=lambda: tcp_open(addr, REGISTRY_PORT),
        netns=lay.netns(GIT),
    )


def registry_host(lay: Layout) -> str:
    """`<addr>:<port>`, the registry part of the lab's image references."""
    return f"{lay.git_address}:{REGISTRY_PORT}"


def pause_ref(lay: Layout, tag: str = PAUSE_TAG) -> str:
    return f"{registry_host(lay)}/{PAUSE_REPO}:{tag}"


# -- images ---------------------------------------------------------------------------------------


def pause_binary(lay: Layout) -> Path:
    """The static pause program, compiled once per source version and cached in the lab dir."""
    source = PAUSE_SOURCE.read_bytes()
    out = root(lay) / f"pause-{hashlib.sha256(source).hexdigest()[:12]}"
    if out.exists():
        return out
    if shutil.which("gcc") is None:
        raise LabError(
            "gcc is missing: install the Debian packages gcc and libc6-dev (the lab compiles its pause image)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    proc = subprocess.run(
        ["gcc", "-static", "-Os", "-s", "-o", str(tmp), str(PAUSE_SOURCE)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise LabError(f"compiling {PAUSE_SOURCE.name} failed: {proc.stderr.strip()[-800:]}")
    tmp.replace(out)
    return out


def _layer(files: list[tuple[str, bytes | None, int, str | None]]) -> bytes:
    """An uncompressed layer tar: (path, content, mode, symlink target) with fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, data, mode, link in files:
            info = tarfile.TarInfo(path)
            info.mtime, info.uid, info.gid, info.mode = 0, 0, 0, mode
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image(layer_tar: bytes, entrypoint: list[str], comment: str) -> tuple[bytes, bytes, bytes]:
    """(manifest, config, gzipped layer) of a one-layer image."""
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps(
        {
            "architecture": _ARCH.get(platform.machine(), platform.machine()),
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {
                "Entrypoint": entrypoint,
                "Cmd": None,
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer_tar)]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": comment}],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": _digest(config)},
            "layers": [{"mediaType": LAYER_TYPE, "size": len(layer), "digest": _digest(layer)}],
        },
        sort_keys=True,
    ).encode()
    return manifest, config, layer


def pause_image(lay: Layout) -> tuple[bytes, bytes, bytes]:
    binary = pause_binary(lay).read_bytes()
    return image(
        _layer([("pause", binary, 0o755, None)]), ["/pause"], "lab: COPY pause /pause (static, assets/pause/pause.c)"
    )


def fake_image() -> tuple[bytes, bytes, bytes]:
    busybox = BUSYBOX.read_bytes()
    files = [("bin", None, 0o755, None), ("bin/busybox", busybox, 0o755, None), ("bin/sleep", None, 0o777, "busybox")]
    return image(_layer(files), ["/bin/sleep", "infinity"], "lab: a sleep-based pause impostor")


# -- pushing --------------------------------------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an operator proxy


def _request(method: str, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def push(base: str, repo: str, tag: str, parts: tuple[bytes, bytes, bytes]) -> str:
    """Push one image (blobs missing from the registry, then the manifest); returns its digest."""
    manifest, config, layer = parts
    for blob in (config, layer):
        digest = _digest(blob)
        status, _, _ = _request("HEAD", f"{base}/v2/{repo}/blobs/{digest}")
        if status == 200:
            continue
        status, headers, body = _request("POST", f"{base}/v2/{repo}/blobs/uploads/")
        location = headers.get("Location")
        if status != 202 or not location:
            raise LabError(f"registry: starting an upload to {repo} failed: HTTP {status} {body[:200]!r}")
        url = urllib.parse.urljoin(base + "/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        status, _, body = _request("PUT", url, blob, {"Content-Type": "application/octet-stream"})
        if status != 201:
            raise LabError(f"registry: uploading {digest} to {repo} failed: HTTP {status} {body[:200]!r}")
    status, _, body = _request("PUT", f"{base}/v2/{repo}/manifests/{tag}", manifest, {"Content-Type": MANIFEST_TYPE})
    if status != 201:
        raise LabError(f"registry: pushing {repo}:{tag} failed: HTTP {status} {body[:200]!r}")
    return _digest(manifest)


def seed(lay: Layout) -> dict[str, str]:
    """Push the genuine pause image and the fake one; returns {reference: manifest digest}."""
    base = f"http://{registry_host(lay)}"
    out = {}
    for tag, parts in ((PAUSE_TAG, pause_image(lay)), (FAKE_TAG, fake_image())):
        out[pause_ref(lay, tag)] = push(base, PAUSE_REPO, tag, parts)
    log.info("lab registry seeded: %s", out)
    return out
