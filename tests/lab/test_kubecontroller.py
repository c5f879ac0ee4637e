"""The lab controller against a real containerd: Deployments become running containers, status tells the truth.

Only the Kubernetes API is emulated (`unidesk_lab.kubeapi`, run here through its real entry point);
containerd, ctr, runc and busybox httpd are the real programs. The test starts its own containerd in a
temporary directory (private mount namespace with its own /run) and imports a hand-made OCI image.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from kubernetes_asyncio import client

pytestmark = [pytest.mark.lab, pytest.mark.asyncio(loop_scope="module")]

NEEDS = ("containerd", "ctr", "runc", "unshare")
if sys.platform != "linux" or os.geteuid() != 0:
    pytest.skip("needs root on Linux (runs containerd and runc)", allow_module_level=True)
if missing := [b for b in NEEDS if shutil.which(b) is None]:
    pytest.skip(
        f"missing {', '.join(missing)} (Debian package docker.io provides containerd/ctr/runc)", allow_module_level=True
    )
if not Path("/bin/busybox").exists():
    pytest.skip("missing /bin/busybox (Debian package busybox-static)", allow_module_level=True)

CTR_NS = "k8s.io"
IMAGE = "docker.io/library/labbox:1"  # what `docker save | ctr import` would name `labbox:1`
PAGE = b"hello from the lab\n"
WAIT = 60.0  # hang guard for polling loops, not a performance assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def oci_image_tar(path: Path, name: str) -> None:
    """A FROM-scratch image in OCI layout: /bin/busybox (static) and /www/index.html, entrypoint busybox."""

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as layer:
        for d in ("bin", "www", "tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            layer.addfile(info)
        layer.add("/bin/busybox", "bin/busybox")
        info = tarfile.TarInfo("www/index.html")
        info.size = len(PAGE)
        layer.addfile(info, io.BytesIO(PAGE))
    layer = layer_buf.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/bin/busybox"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": len(layer)}
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "annotations": {"io.containerd.image.name": name},
                }
            ],
        }
    ).encode()
    with tarfile.open(path, "w") as tar:
        for entry, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)] + [
            (f"blobs/sha256/{digest(b)[7:]}", b) for b in (layer, config, manifest)
        ]:
            info = tarfile.TarInfo(entry)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@dataclass
class Containerd:
    root: Path
    socket: str

    def ctr(self, *args: str) -> str:
        out = subprocess.run(
            ["ctr", "-a", self.socket, "-n", CTR_NS, *args], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def containers(self) -> list[str]:
        return self.ctr("containers", "ls", "-q").split()

    def tasks(self) -> dict[str, str]:
        return {c[0]: c[2] for c in (line.split() for line in self.ctr("tasks", "ls").splitlines()[1:]) if len(c) > 2}

    def pid(self, cid: str) -> int:
        return next(
            int(c[1]) for c in (line.split() for line in self.ctr("tasks", "ls").splitlines()[1:]) if c[0] == cid
        )


def start_containerd(prefix: str) -> tuple[Containerd, subprocess.Popen]:
    """A containerd of its own (a short path: unix socket paths are limited to 108 bytes), with the image."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    sock = root / "containerd.sock"
    config = root / "config.toml"
    config.write_text(f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
""")
    with open(root / "containerd.log", "wb") as log:
        # Own mount namespace with a private /run: shims and runc keep their state out of the host's /run.
        proc = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                'mount -t tmpfs tmpfs /run && exec containerd --config "$0"',
                str(config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + WAIT
    while subprocess.run(["ctr", "-a", str(sock), "version"], capture_output=True).returncode != 0:
        assert proc.poll() is None, (root / "containerd.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "containerd did not come up"
        time.sleep(0.1)
    ctrd = Containerd(root, str(sock))
    oci_image_tar(root / "labbox.tar", IMAGE)
    ctrd.ctr("images", "import", str(root / "labbox.tar"))
    return ctrd, proc


def stop_containerd(ctrd: Containerd, proc: subprocess.Popen) -> None:
    for cid in ctrd.containers():
        subprocess.run(["ctr", "-a", ctrd.socket, "-n", CTR_NS, "tasks", "delete", "-f", cid], capture_output=True)
        subprocess.run(["ctr", "-a", ctrd.socket, "-n", CTR_NS, "containers", "delete", cid], capture_output=True)
    proc.terminate()
    proc.wait(timeout=30)
    shutil.rmtree(ctrd.root, ignore_errors=True)


@pytest.fixture(scope="module")
def containerd():
    ctrd, proc = start_containerd("kc-")
    yield ctrd
    stop_containerd(ctrd, proc)


class KubeAPIProcess:
    """`python -m unidesk_lab.kubeapi` exactly as the lab starts it."""

    def __init__(self, ctrd: Containerd, data: Path) -> None:
        self.ctrd, self.data, self.port = ctrd, data, free_port()
        self.proc: subprocess.Popen | None = None

    async def start(self) -> None:
        self.log = open(self.data.parent / "kubeapi.log", "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "unidesk_lab.kubeapi",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data",
                str(self.data),
                "--containerd-socket",
                self.ctrd.socket,
                "--containerd-namespace",
                CTR_NS,
            ],
            stderr=self.log,
            cwd=Path(__file__).resolve().parents[2],
        )
        deadline = time.monotonic() + WAIT
        while not await http_ok(f"http://127.0.0.1:{self.port}/readyz"):
            assert self.proc.poll() is None, self.logs()
            assert time.monotonic() < deadline, "kubeapi did not come up"
            await asyncio.sleep(0.1)

    async def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(self.proc.wait, WAIT)
        self.log.close()
        return rc

    def logs(self) -> str:
        return (self.data.parent / "kubeapi.log").read_text()[-4000:]


async def http_get(url: str) -> tuple[int, bytes] | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s, s.get(url) as resp:
            return resp.status, await resp.read()
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None


async def http_ok(url: str) -> bool:
    got = await http_get(url)
    return got is not None and got[0] == 200


@pytest_asyncio.fixture(loop_scope="module")
async def kubeapi(containerd, tmp_path):
    server = KubeAPIProcess(containerd, tmp_path / "kube")
    await server.start()
    yield server
    if server.proc and server.proc.poll() is None:
        await server.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def apps(kubeapi):
    config = client.Configuration(host=f"http://127.0.0.1:{kubeapi.port}")
    async with client.ApiClient(configuration=config) as api:
        yield client.AppsV1Api(api), client.CoreV1Api(api)


def deployment(name: str, port: int, image: str = "labbox:1", *, args_only: bool = False) -> dict:
    serve = ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"]
    container: dict = {
        "name": "web",
        "image": image,
        "env": [
            {"name": "PLAIN", "value": "1"},
            {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
        ],
        "readinessProbe": {"httpGet": {"path": "/", "port": port}},
    }
    if args_only:
        container["args"] = serve  # entrypoint /bin/busybox comes from the image config
    else:
        container["command"] = ["/bin/busybox", *serve]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"unidesk.ai/deploy-commit": "c" * 40}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"unidesk.ai/deploy-commit": "c" * 40}},
                "spec": {"containers": [container]},
            },
        },
    }


async def setup_namespace(core, ns: str) -> None:
    await core.create_namespace({"metadata": {"name": ns}})
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"color": "blue"}})
    await core.create_namespaced_secret(ns, {"metadata": {"name": "sec"}, "stringData": {"pw": "s3cret"}})


async def apply(apps_api, ns: str, body: dict):
    return await apps_api.patch_namespaced_deployment(
        body["metadata"]["name"], ns, body, field_manager="lab-test", _content_type="application/apply-patch+yaml"
    )


async def wait_status(apps_api, ns: str, name: str, done) -> client.V1Deployment:
    deadline = time.monotonic() + WAIT
    while True:
        dep = await apps_api.read_namespaced_deployment_status(name, ns)
        if done(dep):
            return dep
        assert time.monotonic() < deadline, f"status never reached: {dep.status}"
        await asyncio.sleep(0.2)


def condition(dep, ctype: str):
    return next((c for c in dep.status.conditions or [] if c.type == ctype), None)


def rolled_out(generation: int):
    def done(dep) -> bool:
        s = dep.status
        prog = condition(dep, "Progressing")
        return (
            s.observed_generation == generation
            and s.available_replicas == 1
            and prog is not None
            and prog.reason == "NewReplicaSetAvailable"
        )

    return done


def container_env(ctrd: Containerd, cid: str) -> dict[str, str]:
    spec = json.loads(ctrd.ctr("containers", "info", cid))["Spec"]
    return dict(e.split("=", 1) for e in spec["process"]["env"])


async def test_deployment_runs_serves_and_reports_image_pull_backoff(containerd, kubeapi, apps):
    apps_api, core = apps
    ns, port = "lab-rollout", free_port()
    await setup_namespace(core, ns)
    await apply(apps_api, ns, deployment("web", port))
    dep = await wait_status(apps_api, ns, "web", rolled_out(1))
    assert (dep.status.replicas, dep.status.ready_replicas, dep.status.updated_replicas) == (1, 1, 1)
    assert condition(dep, "Available").status == "True"
    assert await http_get(f"http://127.0.0.1:{port}/") == (200, PAGE)
    cid = "kubeapi_lab-rollout_web_1"
    assert containerd.tasks()[cid] == "RUNNING"
    env = container_env(containerd, cid)
    assert (env["PLAIN"], env["FROM_CM"], env["FROM_SECRET"]) == ("1", "blue", "s3cret")

    # An image containerd does not have: the old container keeps serving, the rollout reports back-off.
    await apply(apps_api, ns, deployment("web", port, image="nope:404"))
    dep = await wait_status(
        apps_api, ns, "web", lambda d: getattr(condition(d, "Progressing"), "reason", None) == "ImagePullBackOff"
    )
    prog = condition(dep, "Progressing")
    assert prog.status == "False" and "nope:404" in prog.message
    assert dep.status.observed_generation == 2 and dep.status.unavailable_replicas == 1
    assert dep.status.available_replicas == 1 and await http_get(f"http://127.0.0.1:{port}/") == (200, PAGE)

    # A fixed image rolls forward: new generation, new container, old one gone.
    new_port = free_port()
    await apply(apps_api, ns, deployment("web", new_port))
    await wait_status(apps_api, ns, "web", rolled_out(3))
    assert await http_get(f"http://127.0.0.1:{new_port}/") == (200, PAGE)
    assert [c for c in containerd.containers() if c.startswith("kubeapi_lab-rollout_web_")] == [
        "kubeapi_lab-rollout_web_3"
    ]
    assert await http_get(f"http://127.0.0.1:{port}/") is None

    # Deleting the Deployment stops its container.
    await apps_api.delete_namespaced_deployment("web", ns)
    deadline = time.monotonic() + WAIT
    while any(c.startswith("kubeapi_lab-rollout_web_") for c in containerd.containers()):
        assert time.monotonic() < deadline, containerd.containers()
        await asyncio.sleep(0.2)
    assert await http_get(f"http://127.0.0.1:{new_port}/") is None


async def test_sigterm_stops_containers_and_restart_restores_them(containerd, kubeapi, apps):
    apps_api, core = apps
    ns, port = "lab-restart", free_port()
    await setup_namespace(core, ns)
    await apply(apps_api, ns, deployment("api", port, args_only=True))
    await wait_status(apps_api, ns, "api", rolled_out(1))
    assert await http_get(f"http://127.0.0.1:{port}/") == (200, PAGE)

    # Scaling changes the generation but not the pod template: nothing restarts, and the lab runs one
    # container whatever the replica count, which the status admits.
    await apps_api.patch_namespaced_deployment_scale("api", ns, {"spec": {"replicas": 2}})
    dep = await wait_status(apps_api, ns, "api", lambda d: d.status.observed_generation == 2)
    assert (dep.status.replicas, dep.status.ready_replicas, dep.status.unavailable_replicas) == (1, 1, 1)
    assert condition(dep, "Available").status == "False"
    assert [c for c in containerd.containers() if c.startswith("kubeapi_lab-restart_")] == ["kubeapi_lab-restart_api_1"]
    await apps_api.patch_namespaced_deployment_scale("api", ns, {"spec": {"replicas": 1}})
    await wait_status(apps_api, ns, "api", rolled_out(3))
    assert containerd.tasks()["kubeapi_lab-restart_api_1"] == "RUNNING"

    assert await kubeapi.stop() == 0, kubeapi.logs()
    assert not [c for c in containerd.containers() if c.startswith("kubeapi_")]
    assert await http_get(f"http://127.0.0.1:{port}/") is None

    await kubeapi.start()  # same data directory: the Deployment is still there and runs again
    dep = await wait_status(apps_api, ns, "api", rolled_out(3))
    assert dep.metadata.annotations["unidesk.ai/deploy-commit"] == "c" * 40
    assert await http_get(f"http://127.0.0.1:{port}/") == (200, PAGE)


async def test_container_that_exits_is_a_crash_looping_pod_with_exit_code_and_log(containerd, kubeapi, apps):
    """Pods are what a rollout watcher reads on a real cluster: the controller keeps one Pod object per
    Deployment, with the template's labels and annotations. A container that keeps exiting is restarted
    at once, then waits in CrashLoopBackOff (kubelet back-off) with its exit code in lastState and its
    restarts counted; its output is served by pods/NAME/log, the ended container's by `previous`."""
    apps_api, core = apps
    ns = "lab-crash"
    await setup_namespace(core, ns)
    body = deployment("boom", free_port())
    body["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "/bin/busybox",
        "sh",
        "-c",
        "echo starting; echo cannot start >&2; exit 3",
    ]
    await apply(apps_api, ns, body)
    pod = await wait_pod(
        core, ns, "boom", lambda p, cs: cs.state.waiting is not None and cs.state.waiting.reason == "CrashLoopBackOff"
    )
    assert (
        pod.metadata.annotations["unidesk.ai/deploy-commit"] == "c" * 40
        and pod.metadata.owner_references[0].name == "boom"
    )
    status = pod.status.container_statuses[0]
    assert status.restart_count >= 1 and status.last_state.terminated.exit_code == 3 and not status.ready
    assert status.state.waiting.message.startswith("back-off 10s restarting failed container=web")
    for previous in (False, True):
        deadline = time.monotonic() + WAIT  # the shim may still be copying the last bytes when the task is seen stopped
        while sorted(
            (full := await core.read_namespaced_pod_log(pod.metadata.name, ns, previous=previous)).splitlines()
        ) != ["cannot start", "starting"]:
            assert time.monotonic() < deadline, full  # stdout and stderr, one file
            await asyncio.sleep(0.2)
    tail = await core.read_namespaced_pod_log(pod.metadata.name, ns, tail_lines=1)
    assert tail == full.splitlines(keepends=True)[-1]

    # A new template whose image is missing: its pod waits for the image and does not inherit the
    # previous pod's crash (a rollout watcher would blame the new template for the old exit code).
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "nope:404"
    await apply(apps_api, ns, body)
    deadline = time.monotonic() + WAIT
    while True:
        pods = (await core.list_namespaced_pod(ns, label_selector="app=boom")).items
        if [p for p in pods if p.metadata.name != pod.metadata.name and p.status and p.status.container_statuses]:
            break
        assert time.monotonic() < deadline, pods
        await asyncio.sleep(0.2)
    assert [p.metadata.name for p in pods] == ["boom-2"]
    status = pods[0].status.container_statuses[0]
    assert status.state.waiting.reason == "ImagePullBackOff", status
    assert not (status.last_state and status.last_state.terminated) and status.restart_count == 0, status
    await apps_api.delete_namespaced_deployment("boom", ns)
    deadline = time.monotonic() + WAIT
    while (await core.list_namespaced_pod(ns)).items:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def cgroup_of(pid: int, controller: str = "pids") -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(",") or names == "":
            return path
    raise AssertionError(f"no {controller} cgroup for {pid}")


async def pod_status(core, ns: str, app: str):
    pods = (await core.list_namespaced_pod(ns, label_selector=f"app={app}")).items
    return pods[0] if pods and pods[0].status and pods[0].status.container_statuses else None


async def wait_pod(core, ns: str, app: str, done):
    deadline = time.monotonic() + WAIT
    while True:
        pod = await pod_status(core, ns, app)
        if pod is not None and done(pod, pod.status.container_statuses[0]):
            return pod
        assert time.monotonic() < deadline, pod
        await asyncio.sleep(0.2)


async def test_another_nodes_container_of_the_same_name_is_not_this_pods(containerd, kubeapi, apps):
    """Every lab node names its containers alike (`kubeapi_<ns>_<name>_<generation>`), and runc put each
    into the machine-wide cgroup `/<ctr namespace>/<id>`: another lab stopping its own postgres-dev
    (`tasks kill`, then `tasks delete -f`) SIGKILLed this lab's too (exit 137, never ready again). A
    node's containers now live under the node's own cgroup parent, as a kubelet's pods do."""
    apps_api, core = apps
    ns, port = "lab-twin", free_port()
    await setup_namespace(core, ns)
    await apply(apps_api, ns, deployment("db", port))
    await wait_status(apps_api, ns, "db", rolled_out(1))
    cid = "kubeapi_lab-twin_db_1"
    ours = containerd.pid(cid)
    other, proc = start_containerd("kc2-")  # another lab's node, same container id
    try:
        other.ctr("run", "-d", "--null-io", IMAGE, cid, "/bin/busybox", "sleep", "600")
        twin = other.pid(cid)
        assert cgroup_of(ours) != cgroup_of(twin)
        # exactly how a controller stops a container (busybox as PID 1 ignores SIGTERM)
        other.ctr("tasks", "kill", "-s", "SIGTERM", cid)
        other.ctr("tasks", "delete", "-f", cid)
        deadline = time.monotonic() + WAIT
        while alive(twin):
            assert time.monotonic() < deadline, "the other node's container was never stopped"
            await asyncio.sleep(0.1)
    finally:
        stop_containerd(other, proc)
    assert alive(ours) and containerd.tasks()[cid] == "RUNNING" and containerd.pid(cid) == ours
    assert await http_get(f"http://127.0.0.1:{port}/") == (200, PAGE)
    await apps_api.delete_namespaced_deployment("db", ns)


async def test_a_killed_container_is_restarted_ready_again_and_counted(containerd, kubeapi, apps):
    """restartPolicy Always, as a kubelet does it: the pod keeps its name, its container is recreated,
    `restartCount` counts it and `lastState` says how the previous one ended; the pod is ready again."""
    apps_api, core = apps
    ns, port = "lab-kill", free_port()
    await setup_namespace(core, ns)
    await apply(apps_api, ns, deployment("web", port))
    await wait_status(apps_api, ns, "web", rolled_out(1))
    before = await wait_pod(core, ns, "web", lambda p, cs: cs.ready)
    cid = "kubeapi_lab-kill_web_1"
    containerd.ctr("tasks", "kill", "-s", "SIGKILL", cid)
    pod = await wait_pod(core, ns, "web", lambda p, cs: cs.restart_count == 1 and cs.ready)
    cs = pod.status.container_statuses[0]
    assert pod.metadata.name == before.metadata.name and cs.state.running is not None
    assert cs.last_state.terminated.exit_code == 137 and cs.last_state.terminated.reason == "Error"
    dep = await wait_status(apps_api, ns, "web", rolled_out(1))
    assert dep.status.ready_replicas == 1
    assert await http_get(f"http://127.0.0.1:{port}/") == (200, PAGE)
    running = [c for c, state in containerd.tasks().items() if c.startswith("kubeapi_lab-kill_web_")]
    assert running != [cid] and len(running) == 1 and containerd.tasks()[running[0]] == "RUNNING"
    await apps_api.delete_namespaced_deployment("web", ns)
