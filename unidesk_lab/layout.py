"""Where everything in one lab lives: namespaces, addresses, ports and per-host filesystem roots.

A lab is identified by its directory. It claims a free "slot" n (0..199) at `up`; the slot picks the
namespace names (`udl<n>-…`) and the two private subnets, so several labs (the session lab, a
test's own lab, the benchmark) can coexist on one machine:

- 10.231.n.0/24 "lan": operator .1 (root namespace), main-server .2, D601 .3, D518 .4
- 10.232.n.0/24 "wan": operator .1, main-server .2, the git remote ("GitHub") and the image
  registry .10. Providers have no interface or route on the wan, so they reach both only through
  their egress proxy.
- 10.244.n.0/24 pods and 10.96.n.0/24 Service addresses, both inside D601 (`unidesk_lab.podnet`);
  main-server routes them via D601's lan address, the operator's namespace does not.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HOSTS: tuple[str, ...] = ("main-server", "D601", "D518")
PROVIDERS: tuple[str, ...] = ("D601", "D518")
MAIN = "main-server"
K3S_HOST = "D601"
GIT = "github"  # the git remote's namespace (not an SSH host)

EGRESS_PORT = 18789
MSPROXY_PORT = 8090
DEV_MSPROXY_PORT = 8091  # the dev environment's own microservice proxy on the main server
KUBE_PORT = 6443
GIT_PORT = 80
REGISTRY_PORT = 5000  # the image registry beside the git remote (plain HTTP)
SSH_USER = "root"
CONTAINERD_NAMESPACE = "k8s.io"

_LAN_OCTET = {"operator": 1, "main-server": 2, "D601": 3, "D518": 4}
_WAN_OCTET = {"operator": 1, "main-server": 2, GIT: 10}
MAX_SLOTS = 200


def default_dir() -> Path:
    return Path(os.environ.get("UNIDESK_LAB_DIR") or "/tmp/unidesk-lab")


@dataclass(frozen=True)
class Layout:
    """Paths and addresses of the lab in `dir` occupying `slot`."""

    dir: Path
    slot: int

    # -- state ---------------------------------------------------------------------------------
    @staticmethod
    def state_file(dir: Path) -> Path:
        return Path(dir) / "state.json"

    @classmethod
    def load(cls, dir: Path) -> Layout | None:
        """The layout recorded by the last `up` in `dir`, or None when no lab was brought up."""
        try:
            data = json.loads(cls.state_file(dir).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return cls(Path(dir), int(data["slot"]))

    def save(self) -> None:
        path = self.state_file(self.dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"slot": self.slot, "dir": str(self.dir)}) + "\n")
        os.replace(tmp, path)

    # -- network -------------------------------------------------------------------------------
    def netns(self, host: str) -> str:
        """Namespace name of a host, the git remote (GIT) or the bridge namespace ("net")."""
        return f"udl{self.slot}-{host.lower()}"

    @property
    def bridge_netns(self) -> str:
        return self.netns("net")

    def all_netns(self) -> list[str]:
        return [self.netns(h) for h in (*HOSTS, GIT)] + [self.bridge_netns]

    @property
    def operator_ifaces(self) -> tuple[str, str]:
        """Root-namespace veth ends onto the lan and the wan bridge."""
        return f"udl{self.slot}lan", f"udl{self.slot}wan"

    def address(self, host: str) -> str:
        """A host's lan address (what config.json's ssh.host holds); the operator is "operator"."""
        return f"10.231.{self.slot}.{_LAN_OCTET[host]}"

    def wan_address(self, host: str) -> str:
        return f"10.232.{self.slot}.{_WAN_OCTET[host]}"

    @property
    def git_address(self) -> str:
        return self.wan_address(GIT)

    @property
    def git_base_url(self) -> str:
        return f"http://{self.git_address}/git"

    def repo_url(self, name: str) -> str:
        return f"{self.git_base_url}/{name}.git"

    @property
    def msproxy_url(self) -> str:
        return f"http://{self.address(MAIN)}:{MSPROXY_PORT}"

    @property
    def dev_msproxy_url(self) -> str:
        return f"http://{self.address(MAIN)}:{DEV_MSPROXY_PORT}"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.slot}.0/24"

    @property
    def service_cidr(self) -> str:
        return f"10.96.{self.slot}.0/24"

    @property
    def egress_url(self) -> str:
        return f"http://127.0.0.1:{EGRESS_PORT}"

    # -- operator-side files -------------------------------------------------------------------
    @property
    def ssh_dir(self) -> Path:
        return self.dir / "ssh"

    @property
    def identity_file(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        """OpenSSH client config naming every host (`ssh -F <this> D601 cmd`)."""
        return self.ssh_dir / "config"

    @property
    def authorized_keys(self) -> Path:
        return self.ssh_dir / "authorized_keys"

    @property
    def git_root(self) -> Path:
        """Bare repositories served by the git remote."""
        return self.dir / "git"

    @property
    def workspace(self) -> Path:
        """The operator's UniDesk checkout (origin = the lab remote)."""
        return self.dir / "workspace"

    @property
    def sample_checkout(self) -> Path:
        """A working clone of sample-service, for tests that push new commits."""
        return self.dir / "sample-service"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def pid_dir(self) -> Path:
        return self.dir / "pids"

    # -- per-host filesystem roots -------------------------------------------------------------
    def host_root(self, host: str) -> Path:
        return self.dir / "hosts" / host

    def docker_socket(self, host: str) -> Path:
        return self.host_root(host) / "run" / "docker.sock"

    def bin_dir(self, host: str) -> Path:
        """First on the host's SSH PATH: a BuildKit-capable docker client and docker-compose."""
        return self.host_root(host) / "bin"

    def home(self, host: str) -> Path:
        """HOME of SSH sessions on the host (its own ~/.gitconfig, ~/.docker)."""
        return self.host_root(host) / "root"

    def work_dir(self, host: str) -> Path:
        return self.host_root(host) / "var" / "lib" / "unidesk-deploy"

    def compose_file(self, host: str) -> Path:
        return self.host_root(host) / "srv" / "unidesk" / "docker-compose.yml"

    def egress_log(self, host: str) -> Path:
        return self.host_root(host) / "egress.log"

    @property
    def kubeconfig(self) -> Path:
        return self.host_root(K3S_HOST) / "etc" / "rancher" / "k3s" / "k3s.yaml"

    @property
    def containerd_socket(self) -> Path:
        return self.host_root(K3S_HOST) / "run" / "k3s" / "containerd" / "containerd.sock"

    @property
    def kube_data(self) -> Path:
        return self.host_root(K3S_HOST) / "kube"

    @property
    def cluster_file(self) -> Path:
        """Services, their addresses and endpoints, as D601's pod network last wrote them."""
        return self.kube_data / "cluster.json"
