"""The lab itself, against its real programs: sshd, dockerd, git http-backend, egress proxies,
containerd and the microservice proxy. Only the Kubernetes API is emulated (unidesk_lab.kubeapi).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiodocker
import asyncssh
import pytest
import yaml

from tests.lab.conftest import lab_skip_reason
from unidesk_lab import lab as labapi
from unidesk_lab.layout import EGRESS_PORT, HOSTS, KUBE_PORT, Layout

pytestmark = [pytest.mark.lab]


async def connect(lab: dict, host: str, known_hosts: str | None = None) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        lab["addresses"][host],
        username=lab["ssh"]["user"],
        client_keys=[lab["ssh"]["identityFile"]],
        known_hosts=known_hosts or lab["ssh"]["knownHosts"],
        connect_timeout=10,
    )


def ssh(lab: dict, host: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """OpenSSH with the lab's generated client config and known_hosts."""
    proc = subprocess.run(
        ["ssh", "-F", str(lab["sshConfig"]), host, command], capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ssh {host} {command!r} exited {proc.returncode}: {proc.stderr}{proc.stdout}")
    return proc


def egress_entries(lab: dict, host: str) -> list[dict]:
    path = lab["layout"].egress_log(host)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- status and CLI ---------------------------------------------------------------------------


def test_status_lists_every_host_with_running_daemons(lab):
    assert lab["up"] is True
    assert [h["name"] for h in lab["hosts"]] == list(HOSTS)
    for host in lab["hosts"]:
        names = {d["name"] for d in host["daemons"]}
        assert {"sshd", "dockerd"} <= names
        assert all(d["running"] and d["pid"] for d in host["daemons"]), host
    d601 = next(h for h in lab["hosts"] if h["name"] == "D601")
    assert {"egress", "containerd"} <= {d["name"] for d in d601["daemons"]}


def test_cli_status_prints_one_json_document(lab):
    proc = subprocess.run(
        [sys.executable, "-m", "unidesk_lab.cli", "lab", "status", "--dir", lab["dir"]], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["up"] is True and doc["gitRemote"] == lab["gitRemote"]
    assert set(doc) >= {"up", "dir", "workspace", "gitRemote", "ssh", "hosts"}


def test_cli_status_of_no_lab_and_a_failing_up(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "unidesk_lab.cli", "lab", "status", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["up"] is False
    proc = subprocess.run(
        [sys.executable, "-m", "unidesk_lab.cli", "lab", "up", "--dir", "/proc/unidesk-lab-nowhere"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["errors"][0]["code"] == "lab_failed" and doc["errors"][0]["message"]


def test_workspace_config_is_a_valid_catalog(lab):
    from unidesk_tui.catalog import load_catalog

    catalog = load_catalog(lab["config"])
    assert {t.id: t.ssh.host for t in catalog.targets} == lab["addresses"]
    assert catalog.target("D601").k3s.kubeconfig == str(lab["kubeconfig"])
    modes = {m.id: (m.deployment.mode, m.deployment.target) for m in catalog.microservices}
    assert modes["backend-core"] == ("unidesk-direct", "main-server")
    assert modes["code-queue-mgr"] == ("internal-sidecar", "main-server")
    assert modes["d518-worker"] == ("unidesk-direct", "D518")
    assert [m.id for m in catalog.microservices if m.deployment.mode == "k3sctl-managed"] == [
        "decision-center",
        "code-queue",
    ]
    assert catalog.microservice("node-exporter").unsupported_reason


# ---- SSH --------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_ssh_verifies_host_key_and_sets_host_environment(lab, host):
    async with await connect(lab, host) as conn:
        result = await conn.run(
            "hostname; command -v docker; echo $DOCKER_HOST; docker version --format '{{.Client.Version}} "
            "{{.Server.Version}}'; docker-compose version --short",
            check=True,
        )
    name, docker, docker_host, versions, compose = result.stdout.split("\n")[:5]
    assert name == host
    assert docker == str(lab["layout"].bin_dir(host) / "docker")  # not /usr/local/bin/docker (no buildx)
    assert docker_host == f"unix://{lab['dockerSockets'][host]}"
    assert versions.startswith("20.10") and compose.startswith("1.")


async def test_ssh_with_a_wrong_host_key_is_refused(lab, tmp_path):
    lay: Layout = lab["layout"]
    lines = Path(lab["ssh"]["knownHosts"]).read_text().splitlines()
    keys = {line.split()[0].split(",")[0]: line.split(None, 1)[1] for line in lines}
    wrong = tmp_path / "known_hosts"
    # main-server's address with D601's key: a different host answering
    wrong.write_text(f"main-server,{lay.address('main-server')} {keys['D601']}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await connect(lab, "main-server", known_hosts=str(wrong))


def test_openssh_uses_the_generated_known_hosts(lab):
    assert ssh(lab, "D518", "hostname").stdout.strip() == "D518"


async def test_stopped_sshd_refuses_and_comes_back(lab):
    assert labapi.stop_daemon(lab["dir"], "D518", "sshd") is True
    try:
        status = labapi.status(lab["dir"])
        d518 = next(h for h in status["hosts"] if h["name"] == "D518")
        assert next(d for d in d518["daemons"] if d["name"] == "sshd")["running"] is False
        with pytest.raises(OSError):
            await connect(lab, "D518")
    finally:
        labapi.start_daemon(lab["dir"], "D518", "sshd")
    async with await connect(lab, "D518") as conn:
        assert (await conn.run("hostname", check=True)).stdout.strip() == "D518"


# ---- Docker over SSH --------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_docker_api_over_ssh_forwarded_socket(lab, host):
    async with await connect(lab, host) as conn:
        listener = await conn.forward_local_port_to_path("127.0.0.1", 0, str(lab["dockerSockets"][host]))
        docker = aiodocker.Docker(url=f"tcp://127.0.0.1:{listener.get_port()}")
        try:
            containers = await docker.containers.list(all=True)
            info = await docker.system.info()
        finally:
            await docker.close()
            listener.close()
    assert info["Name"] == host
    seeded = {c["Labels"].get("com.docker.compose.service"): c["Labels"] for c in containers}
    expected = {"main-server": {"backend-core", "code-queue-mgr"}, "D518": {"d518-worker"}, "D601": set()}[host]
    assert expected <= set(seeded)
    for service in expected:
        assert seeded[service]["unidesk.ai/source-commit"] == lab["content"]["old"]
        assert seeded[service]["unidesk.ai/service-id"] == service


def test_seeded_services_answer_through_the_microservice_proxy_with_the_old_commit(lab):
    import urllib.request

    for service in ("backend-core", "code-queue-mgr", "d518-worker"):
        with urllib.request.urlopen(f"{lab['msproxyUrl']}/api/microservices/{service}/health", timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "ok" and body["service"] == service
        assert body["deploy"] == {"repo": lab["content"]["sampleRepo"], "commit": lab["content"]["old"]}
    assert lab["content"]["old"] != lab["content"]["new"]


def test_microservice_proxy_errors(lab):
    import urllib.error
    import urllib.request

    for service, status in (("no-such-service", 404), ("code-queue", 502)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{lab['msproxyUrl']}/api/microservices/{service}/health", timeout=10)
        assert err.value.code == status
        assert json.loads(err.value.read())["ok"] is False


# ---- git remote and egress ------------------------------------------------------------------


def test_remote_holds_environment_branches_with_only_deploy_json(lab):
    ws = Path(lab["workspace"])
    git = ["git", "-C", str(ws)]
    subprocess.run([*git, "fetch", "-q", "origin"], check=True)  # over HTTP from the operator
    for env in ("dev", "prod"):
        files = subprocess.run(
            [*git, "ls-tree", "--name-only", f"origin/deploy/{env}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert files == ["deploy.json"]
        doc = json.loads(
            subprocess.run(
                [*git, "show", f"origin/deploy/{env}:deploy.json"], capture_output=True, text=True, check=True
            ).stdout
        )
        assert doc["environment"] == env
    content = lab["content"]
    assert len(content["commits"]) >= 4
    assert content["ambiguousCommits"][0][:4] == content["ambiguousCommits"][1][:4]


def test_main_server_reaches_the_git_remote_directly(lab):
    out = ssh(
        lab, "main-server", shlex.join(["git", "ls-remote", lab["content"]["sampleRepo"], "refs/heads/master"])
    ).stdout
    assert out.split()[0] == lab["content"]["new"]


@pytest.mark.parametrize("host", ["D601", "D518"])
def test_provider_clones_only_through_its_egress_proxy(lab, host):
    url = lab["content"]["sampleRepo"]
    dest = f"{lab['layout'].work_dir(host)}/clone-{uuid.uuid4().hex[:8]}"
    direct = ssh(lab, host, shlex.join(["timeout", "20", "git", "clone", "-q", url, dest]), check=False)
    assert direct.returncode != 0, "a provider must not reach the git remote directly"
    before = len(egress_entries(lab, host))
    proxy = f"http://127.0.0.1:{EGRESS_PORT}"
    ssh(lab, host, shlex.join(["env", f"http_proxy={proxy}", "git", "clone", "-q", url, dest]))
    head = ssh(lab, host, shlex.join(["git", "-C", dest, "rev-parse", "HEAD"])).stdout.strip()
    assert head == lab["content"]["new"]
    new = egress_entries(lab, host)[before:]
    assert any(e["target"].startswith(url) and e["result"] == "ok" for e in new), new
    ssh(lab, host, shlex.join(["rm", "-rf", dest]))


def test_stopped_egress_has_no_fallback(lab):
    url = lab["content"]["sampleRepo"]
    proxy = f"http://127.0.0.1:{EGRESS_PORT}"
    cmd = shlex.join(["env", f"http_proxy={proxy}", "timeout", "20", "git", "ls-remote", url])
    assert labapi.stop_egress(lab["dir"], "D518") is True
    try:
        assert ssh(lab, "D518", cmd, check=False).returncode != 0
    finally:
        labapi.start_egress(lab["dir"], "D518")
    assert lab["content"]["new"] in ssh(lab, "D518", cmd).stdout


# ---- k3s stand-in -----------------------------------------------------------------------------

IMAGE = "unidesk-decision-center:lab-test"


@pytest.fixture(scope="module")
def d601_image(lab):
    """The sample at the new commit, built on D601 with BuildKit (source fetched through the egress
    proxy) and imported into D601's k3s containerd with `docker save | ctr import`."""
    lay: Layout = lab["layout"]
    new, url = lab["content"]["new"], lab["content"]["sampleRepo"]
    proxy = f"http://127.0.0.1:{EGRESS_PORT}"
    src = f"{lay.work_dir('D601')}/src-{uuid.uuid4().hex[:8]}"
    labels = {
        "unidesk.ai/service-id": "decision-center",
        "unidesk.ai/source-repo": url,
        "unidesk.ai/source-commit": new,
        "unidesk.ai/dockerfile": "Dockerfile",
    }
    build = (
        ["docker", "build", "--network", "host", "-t", IMAGE]
        + [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]
        + ["-"]
    )
    script = " && ".join(
        [
            shlex.join(["env", f"http_proxy={proxy}", "git", "clone", "-q", url, src]),
            f"git -C {shlex.quote(src)} archive {new} | {shlex.join(build)} 2>&1",
            f"docker save {IMAGE} | ctr -a {shlex.quote(str(lay.containerd_socket))} -n k8s.io images import - "
            ">/dev/null",
            f"rm -rf {shlex.quote(src)}",
        ]
    )
    out = ssh(lab, "D601", script).stdout
    assert "[internal] load" in out or "#1 " in out, f"not a BuildKit build:\n{out}"
    return IMAGE


def test_docker_image_imported_into_k3s_containerd(lab, d601_image):
    sock = str(lab["containerdSocket"])
    refs = ssh(lab, "D601", shlex.join(["ctr", "-a", sock, "-n", "k8s.io", "images", "ls", "-q"])).stdout.split()
    assert f"docker.io/library/{d601_image}" in refs


def _kubeapi_running(lab) -> bool:
    d601 = next(h for h in labapi.status(lab["dir"])["hosts"] if h["name"] == "D601")
    return any(d["name"] == "kubeapi" and d["running"] for d in d601["daemons"])


async def test_deployment_applied_through_the_emulator_answers_through_the_microservice_proxy(lab, d601_image):
    # The emulator always ships with the lab: a lab without it is a failure, not a skip.
    assert _kubeapi_running(lab), "D601's Kubernetes API emulator (unidesk_lab.kubeapi) is not running"
    import aiohttp
    from kubernetes_asyncio import client

    new, url = lab["content"]["new"], lab["content"]["sampleRepo"]
    bare = lab["layout"].git_root / "sample-service.git"
    text = subprocess.run(
        ["git", "--git-dir", str(bare), "show", f"{new}:k3s/sample.k8s.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for key, value in {
        "__IMAGE__": d601_image,
        "__SERVICE_ID__": "decision-center",
        "__DEPLOY_REPO__": url,
        "__DEPLOY_COMMIT__": new,
        "__DEPLOY_REQUESTED_COMMIT__": new,
    }.items():
        text = text.replace(key, value)
    docs = [d for d in yaml.safe_load_all(text) if d and d["metadata"]["name"] == "decision-center"]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    svc = next(d for d in docs if d["kind"] == "Service")  # the proxy reaches the pod through its Service
    health = f"{lab['msproxyUrl']}/api/microservices/decision-center/health"

    async with await connect(lab, "D601") as conn:
        listener = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", KUBE_PORT)
        config = client.Configuration(host=f"http://127.0.0.1:{listener.get_port()}")
        async with client.ApiClient(config) as api_client:
            apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
            await _delete_deployment(apps, "decision-center", core)  # left by an earlier test in this session
            await apps.create_namespaced_deployment("unidesk", deployment)
            await core.create_namespaced_service("unidesk", svc)
            try:
                body = None
                deadline = time.monotonic() + 60
                async with aiohttp.ClientSession() as http:
                    while time.monotonic() < deadline:
                        async with http.get(health) as resp:
                            if resp.status == 200:
                                body = await resp.json(content_type=None)
                                break
                        await _sleep(0.3)
                assert body is not None, "decision-center never answered through the microservice proxy"
                assert body["deploy"]["commit"] == new and body["service"] == "decision-center"
                dep = await apps.read_namespaced_deployment("decision-center", "unidesk")
                assert dep.metadata.annotations["UNIDESK_DEPLOY_COMMIT"] == new
            finally:
                await _delete_deployment(apps, "decision-center", core)
        listener.close()
    # leave the session lab as it was: the container is gone and its port free again
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            async with http.get(health) as resp:
                if resp.status == 502:
                    break
            await _sleep(0.3)


async def _delete_deployment(apps, name: str, core=None) -> None:
    from kubernetes_asyncio.client.exceptions import ApiException

    deletes = [apps.delete_namespaced_deployment] + ([core.delete_namespaced_service] if core else [])
    for delete in deletes:
        try:
            await delete(name, "unidesk")
        except ApiException as exc:
            if exc.status != 404:
                raise


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


# ---- a lab of its own: idempotent up, failing daemon, down after a crash ------------------------


@pytest.fixture
def own_lab_dir():
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    path = Path(f"/tmp/udlab-{uuid.uuid4().hex[:6]}")
    yield path
    labapi.down(path)


def _mounts_mentioning(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(path) in line]


def test_own_lab_up_is_idempotent_names_failing_daemons_and_down_cleans_up_after_a_crash(own_lab_dir):
    first = labapi.up(own_lab_dir)
    assert first["up"] is True
    again = labapi.up(own_lab_dir)
    assert again["hosts"] == first["hosts"], "up on a running lab must keep the running daemons"

    # a daemon that cannot start is named with its host and the tail of its log
    lay = Layout.load(own_lab_dir)
    labapi.stop_daemon(own_lab_dir, "D518", "sshd")
    config = lay.host_root("D518") / "etc" / "ssh" / "sshd_config"
    config.write_text(config.read_text() + "NoSuchSshdOption yes\n")
    with pytest.raises(labapi.LabError) as err:
        labapi.start_daemon(own_lab_dir, "D518", "sshd")
    assert "D518" in str(err.value) and "sshd" in str(err.value) and "NoSuchSshdOption" in str(err.value)

    # crash: every daemon killed at once, nothing cleaned up
    pids = [int(p.read_text()) for p in lay.pid_dir.glob("*.pid")]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    result = labapi.down(own_lab_dir)
    assert result["ok"] is True

    names = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    assert not names & set(lay.all_netns())
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert not any(iface in links for iface in lay.operator_ifaces)
    alive = [
        p
        for p in pids
        if Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
    ]
    assert alive == []
    assert [p for p in own_lab_dir.rglob("*") if p.is_socket()] == []
    assert _mounts_mentioning(own_lab_dir) == []
    assert labapi.status(own_lab_dir)["up"] is False

    # plain `down` keeps the directory (image caches, runtime state); `down --purge` deletes it
    assert (own_lab_dir / "hosts").is_dir()
    proc = subprocess.run(
        [sys.executable, "-m", "unidesk_lab.cli", "lab", "down", "--purge", "--dir", str(own_lab_dir)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["purged"] is True, proc.stdout + proc.stderr
    assert not own_lab_dir.exists()


# ---- more of the egress proxy and the microservice proxy --------------------------------------

_CONNECT_CLIENT = """
import socket, sys
proxy, target, path = sys.argv[1:4]
s = socket.create_connection(("127.0.0.1", int(proxy)), timeout=10)
s.sendall(f"CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n".encode())
assert s.recv(4096).startswith(b"HTTP/1.1 200"), "CONNECT refused"
s.sendall(f"GET {path} HTTP/1.1\\r\\nHost: {target}\\r\\nConnection: close\\r\\n\\r\\n".encode())
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.split(b"\\r\\n", 1)[0].decode())
"""


def test_egress_proxy_tunnels_connect_requests(lab):
    lay: Layout = lab["layout"]
    target = f"{lay.git_address}:80"
    path = "/git/sample-service.git/info/refs?service=git-upload-pack"
    before = len(egress_entries(lab, "D601"))
    out = ssh(lab, "D601", shlex.join([sys.executable, "-c", _CONNECT_CLIENT, str(EGRESS_PORT), target, path])).stdout
    assert out.strip() == "HTTP/1.1 200 OK"
    assert any(e["method"] == "CONNECT" and e["target"] == target for e in egress_entries(lab, "D601")[before:])


def test_microservice_proxy_reads_config_per_request(lab):
    import urllib.error
    import urllib.request

    config = Path(lab["config"])
    original = config.read_text()
    url = f"{lab['msproxyUrl']}/api/microservices/backend-core/health"
    doc = json.loads(original)
    next(m for m in doc["microservices"] if m["id"] == "backend-core")["health"]["port"] = 18099  # nothing listens
    try:
        config.write_text(json.dumps(doc))
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=10)
        assert err.value.code == 502
    finally:
        config.write_text(original)
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert json.loads(resp.read())["service"] == "backend-core"


def test_git_remote_accepts_pushes_and_force_pushes(lab, tmp_path):
    url, new = lab["content"]["sampleRepo"], lab["content"]["new"]
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@lab.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@lab.invalid",
    }

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path / "c"), *args], capture_output=True, text=True, check=True, env=env
        ).stdout.strip()

    subprocess.run(["git", "clone", "-q", url, str(tmp_path / "c")], check=True)
    (tmp_path / "c" / "pushed.txt").write_text("pushed over HTTP\n")
    git("add", "pushed.txt")
    git("commit", "-qm", "pushed over HTTP")
    branch = f"refs/heads/lab-push-{uuid.uuid4().hex[:6]}"  # a branch of its own: master stays as the session expects
    try:
        git("push", "-q", "origin", f"HEAD:{branch}")
        assert git("ls-remote", "origin", branch).split()[0] == git("rev-parse", "HEAD")
        git("push", "-q", "--force", "origin", f"{new}:{branch}")
        assert git("ls-remote", "origin", branch).split()[0] == new
    finally:
        git("push", "-q", "origin", f":{branch}")
