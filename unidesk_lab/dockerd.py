"""Per-host dockerd: own data root, exec root and socket under the host's filesystem root.

No bridge, no iptables (the host namespaces have no NAT to do): builds use `--network host` and
containers run with `network_mode: host`, bound to the host's address.
"""

from __future__ import annotations

import socket

from unidesk_lab.daemon import Daemon
from unidesk_lab.layout import Layout


def docker_ping(path: str) -> bool:
    """GET /_ping on the daemon's unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in s.recv(64)
    except OSError:
        return False


def daemon(lay: Layout, host: str) -> Daemon:
    root = lay.host_root(host)
    data, execroot = root / "var" / "lib" / "docker", root / "run" / "docker-exec"
    cfg = root / "etc" / "docker" / "daemon.json"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text("{}\n")  # never read the machine's /etc/docker/daemon.json
    data.mkdir(parents=True, exist_ok=True)
    sock = lay.docker_socket(host)
    sock.parent.mkdir(parents=True, exist_ok=True)
    return Daemon(
        host=host,
        name="dockerd",
        argv=[
            "/usr/sbin/dockerd",
            f"--config-file={cfg}",
            f"--data-root={data}",
            f"--exec-root={execroot}",
            f"--pidfile={root / 'run' / 'docker.pid'}",
            f"--host=unix://{sock}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            "--storage-driver=overlay2",
            "--shutdown-timeout=2",
        ],
        ready=lambda: docker_ping(str(sock)),
        in_host=True,
    )
