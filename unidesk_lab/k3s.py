"""The k3s stand-in on D601: a real containerd on the configured socket, the Kubernetes API emulator
(`unidesk_lab.kubeapi`, the only emulated part of the lab) on 127.0.0.1:6443, and a kubeconfig
at the configured path.

The kubeconfig points at plain HTTP without credentials: the emulator has no TLS and no auth.
Both daemons run in D601's host namespaces, so `ctr` over SSH on D601 sees the same /run.
"""

from __future__ import annotations

import importlib.util
import sys

from unidesk_lab.daemon import Daemon
from unidesk_lab.layout import CONTAINERD_NAMESPACE, K3S_HOST, KUBE_PORT, Layout
from unidesk_lab.netns import tcp_open_in


def kubeapi_available() -> bool:
    """The emulator module is written by another part of the project; the lab runs without it."""
    return importlib.util.find_spec("unidesk_lab.kubeapi") is not None


def _unix_listening(path: str) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            return True
    except OSError:
        return False


def containerd_daemon(lay: Layout) -> Daemon:
    root = lay.host_root(K3S_HOST)
    sock = lay.containerd_socket
    sock.parent.mkdir(parents=True, exist_ok=True)
    cfg = root / "var" / "lib" / "rancher" / "k3s" / "agent" / "etc" / "containerd" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        f"""version = 2
root = "{root / "var" / "lib" / "rancher" / "k3s" / "agent" / "containerd"}"
state = "{sock.parent / "state"}"
# no CRI: nothing here is a kubelet; the emulator drives containers through the containerd API.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"
"""
    )
    return Daemon(
        host=K3S_HOST,
        name="containerd",
        argv=["/usr/bin/containerd", "--config", str(cfg)],
        ready=lambda: _unix_listening(str(sock)),
        in_host=True,
    )


def kubeapi_daemon(lay: Layout) -> Daemon:
    lay.kube_data.mkdir(parents=True, exist_ok=True)
    ns = lay.netns(K3S_HOST)
    return Daemon(
        host=K3S_HOST,
        name="kubeapi",
        argv=[
            sys.executable,
            "-m",
            "unidesk_lab.kubeapi",
            "--host",
            "127.0.0.1",
            "--port",
            str(KUBE_PORT),
            "--data",
            str(lay.kube_data),
            "--containerd-socket",
            str(lay.containerd_socket),
            "--containerd-namespace",
            CONTAINERD_NAMESPACE,
            # pods in their own network namespaces on D601 (unidesk_lab.podnet), never the host network
            "--pod-cidr",
            lay.pod_cidr,
            "--service-cidr",
            lay.service_cidr,
            "--host-root",
            str(lay.host_root(K3S_HOST)),
        ],
        ready=lambda: tcp_open_in(ns, "127.0.0.1", KUBE_PORT),
        in_host=True,
    )


def write_kubeconfig(lay: Layout) -> None:
    path = lay.kubeconfig
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""# Lab k3s stand-in: the Kubernetes API emulator on D601, plain HTTP and no auth.
apiVersion: v1
kind: Config
clusters:
- name: default
  cluster:
    server: http://127.0.0.1:{KUBE_PORT}
contexts:
- name: default
  context:
    cluster: default
    user: default
current-context: default
users:
- name: default
  user: {{}}
"""
    )


LAB_NAMESPACES = ("unidesk", "unidesk-dev")


def ensure_namespaces(lay: Layout, names: tuple[str, ...] = LAB_NAMESPACES) -> None:
    """Create the prod and dev namespaces (present on the real D601) through the emulator's API."""
    import json
    import urllib.error
    import urllib.request

    from unidesk_lab.netns import in_netns

    def create(name: str) -> None:
        body = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{KUBE_PORT}/api/v1/namespaces",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(req, timeout=5).close()
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # already exists
                raise

    for name in names:
        in_netns(lay.netns(K3S_HOST), create, name)
