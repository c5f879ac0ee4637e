"""The lab's pod network on D601: every pod in its own network namespace, Service addresses, cluster DNS.

Runs inside D601's namespaces (the Kubernetes API emulator's controller calls it), so the pod
namespaces, the CNI state and the iptables rules all live in D601 and vanish with it:

- a pod gets `ip netns add <pod>` (in D601's private /run), `lo` up, and Debian's CNI `bridge`
  plugin run directly (bridge `cni0`, host-local IPAM on the pod CIDR, hairpin mode); the plugin's
  JSON result holds the pod IP. `ctr run --with-ns network:/run/netns/<pod>` then starts the
  container there. Removal is CNI DEL and `ip netns del`.
- a Service with a ClusterIP gets one DNAT rule per port in D601's own nat chain (UDL-SERVICES,
  hooked into PREROUTING and OUTPUT) to its ready endpoint; traffic from a pod back to the pod range
  through a Service is masqueraded (a pod may call its own Service). D601 routes the service range
  onto `cni0` (it has no default route).
- cluster DNS is a hosts file per namespace (`<svc>.<ns>.svc.cluster.local`, `<svc>.<ns>`, and the
  short `<svc>` for the pod's own namespace), rewritten in place and bind-mounted as each pod's
  /etc/hosts; `cluster.json` lists every Service's address, ports and endpoints for the lab's
  microservice proxies on the main server.

Not emulated: kube-proxy's load balancing over several replicas (one pod per workload), NetworkPolicy,
a DNS server (no SRV records, no search path), UDP Services, NodePort/LoadBalancer.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CNI_PATH = "/usr/lib/cni"  # Debian containernetworking-plugins
BRIDGE = "cni0"
NETNS_PREFIX = "udlpod-"
CHAIN = "UDL-SERVICES"
POST_CHAIN = "UDL-POSTROUTING"
RUN_DIR = Path("/run/unidesk-lab-pods")  # D601's private /run: gone when the lab goes down
CLUSTER_DOMAIN = "svc.cluster.local"


class PodNetworkError(RuntimeError):
    pass


@dataclass
class Endpoint:
    """A ready pod behind a Service: its address and named container ports."""

    ip: str
    ports: dict[str, int] = field(default_factory=dict)
    hostname: str | None = None  # StatefulSet pods: `<sts>-0`


def netns_name(pod_id: str) -> str:
    return NETNS_PREFIX + hashlib.sha256(pod_id.encode()).hexdigest()[:12]


async def _run(
    *argv: str, input: bytes | None = None, env: dict[str, str] | None = None, check: bool = True
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate(input)
    rc = proc.returncode or 0
    if check and rc != 0:
        raise PodNetworkError(
            f"{' '.join(argv[:4])} failed ({rc}): {(err or out).decode(errors='replace').strip()[:400]}"
        )
    return rc, out.decode(errors="replace"), err.decode(errors="replace")


class PodNetwork:
    """Pod namespaces, Service VIP rules and DNS files on the node this process runs in."""

    def __init__(
        self, pod_cidr: str, service_cidr: str, state_dir: Path, cni_path: str = CNI_PATH, run_dir: Path = RUN_DIR
    ) -> None:
        self.pod_net = ipaddress.ip_network(pod_cidr)
        self.service_net = ipaddress.ip_network(service_cidr)
        self.state_dir, self.cni_path, self.run_dir = state_dir, cni_path, run_dir
        self.hosts_dir = state_dir / "hosts"
        self._rules: str | None = None
        self._files: dict[Path, str] = {}

    @property
    def cluster_file(self) -> Path:
        return self.state_dir / "cluster.json"

    def hosts_file(self, namespace: str) -> Path:
        return self.hosts_dir / namespace

    def _cni_config(self) -> bytes:
        return json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "unidesk-lab-pods",
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": str(self.pod_net),
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(self.run_dir / "ipam"),
                },
            }
        ).encode()

    def _cni_env(self, command: str, name: str) -> dict[str, str]:
        return {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": name,
            "CNI_NETNS": f"/run/netns/{name}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": self.cni_path,
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"),
        }

    # ---- node setup

    async def start(self) -> None:
        """Forwarding on, our nat chains hooked in, leftovers of an earlier run removed."""
        if not Path(self.cni_path, "bridge").exists():
            raise PodNetworkError(f"{self.cni_path}/bridge is missing: install containernetworking-plugins")
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.hosts_dir.mkdir(parents=True, exist_ok=True)
        for name in sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []:
            if name.startswith(NETNS_PREFIX):
                await self._teardown(name)
        await _run("iptables-restore", "--noflush", input=self._rule_text([]).encode())
        for hook, chain in (("PREROUTING", CHAIN), ("OUTPUT", CHAIN), ("POSTROUTING", POST_CHAIN)):
            rc, _, _ = await _run("iptables", "-w", "-t", "nat", "-C", hook, "-j", chain, check=False)
            if rc != 0:
                await _run("iptables", "-w", "-t", "nat", "-A", hook, "-j", chain)

    async def _route_services(self) -> None:
        """Once cni0 exists: the service range goes onto the bridge (D601 has no default route)."""
        await _run("ip", "route", "replace", str(self.service_net), "dev", BRIDGE)

    # ---- pods

    async def add(self, pod_id: str) -> tuple[str, str]:
        """A fresh namespace for `pod_id` on the bridge: (netns path, pod IP)."""
        name = netns_name(pod_id)
        await self._teardown(name)
        await _run("ip", "netns", "add", name)
        try:
            await _run("ip", "-n", name, "link", "set", "lo", "up")
            _, out, _ = await _run(f"{self.cni_path}/bridge", input=self._cni_config(), env=self._cni_env("ADD", name))
            result = json.loads(out)
            ip = result["ips"][0]["address"].split("/")[0]
        except (PodNetworkError, ValueError, KeyError, IndexError) as exc:
            await self._teardown(name)
            raise PodNetworkError(f"pod network for {pod_id}: {exc}") from None
        await self._route_services()
        log.info("pod %s: netns %s ip %s", pod_id, name, ip)
        return f"/run/netns/{name}", ip

    @staticmethod
    def netns_path(pod_id: str) -> str:
        """The namespace `add` made for `pod_id` (a restarted container joins it again)."""
        return f"/run/netns/{netns_name(pod_id)}"

    async def remove(self, pod_id: str) -> None:
        await self._teardown(netns_name(pod_id))

    async def _teardown(self, name: str) -> None:
        if not Path("/run/netns", name).exists():
            return
        await _run(f"{self.cni_path}/bridge", input=self._cni_config(), env=self._cni_env("DEL", name), check=False)
        await _run("ip", "netns", "del", name, check=False)

    # ---- services and DNS

    def owns(self, ip: str) -> bool:
        """Whether `ip` is in this node's service range."""
        try:
            return ipaddress.ip_address(ip) in self.service_net
        except ValueError:
            return False

    def allocate(self, taken: set[str]) -> str:
        """A free ClusterIP (the first address is the range's own, as on a real cluster)."""
        for host in list(self.service_net.hosts())[1:]:
            if str(host) not in taken:
                return str(host)
        raise PodNetworkError(f"service range {self.service_net} is full")

    def _rule_text(self, rules: list[str]) -> str:
        post = f"-A {POST_CHAIN} -s {self.pod_net} -d {self.pod_net} -m conntrack --ctstate DNAT -j MASQUERADE"
        return "\n".join(["*nat", f":{CHAIN} - [0:0]", f":{POST_CHAIN} - [0:0]", *rules, post, "COMMIT", ""])

    async def sync(self, services: list[dict], endpoints: dict[tuple[str, str], list[Endpoint]]) -> None:
        """Rules, hosts files and cluster.json for `services` (Service objects) and their ready endpoints."""
        rules: list[str] = []
        names: dict[str, list[tuple[str, str]]] = {}  # namespace -> (ip, svc name) for hosts files
        cluster: dict[str, dict] = {}
        for svc in services:
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            spec = svc.get("spec") or {}
            vip = spec.get("clusterIP")
            eps = endpoints.get((ns, name), [])
            ports = []
            for port in spec.get("ports") or []:
                if (port.get("protocol") or "TCP") != "TCP":
                    continue
                target = port.get("targetPort", port.get("port"))
                resolved = [(e.ip, e.ports.get(target) if isinstance(target, str) else target) for e in eps]
                resolved = [(ip, p) for ip, p in resolved if p]
                ports.append({"name": port.get("name"), "port": port["port"], "targetPort": target})
                if vip and vip != "None" and resolved:
                    ip, tp = resolved[0]
                    rules.append(
                        f"-A {CHAIN} -d {vip}/32 -p tcp -m tcp --dport {int(port['port'])} "
                        f"-j DNAT --to-destination {ip}:{int(tp)}"
                    )
            if vip and vip != "None":
                names.setdefault(ns, []).append((vip, name))
            elif eps:  # headless: the name is the pod's own address
                names.setdefault(ns, []).append((eps[0].ip, name))
                for e in eps:
                    if e.hostname:
                        names[ns].append((e.ip, f"{e.hostname}.{name}"))
            cluster[f"{ns}/{name}"] = {
                "clusterIP": vip,
                "ports": ports,
                "endpoints": [{"ip": e.ip, "ports": {str(k): v for k, v in e.ports.items()}} for e in eps],
            }
        text = self._rule_text(sorted(rules))
        if text != self._rules:
            await _run("iptables-restore", "--noflush", input=text.encode())
            self._rules = text
        namespaces = set(names) | {p.name for p in self.hosts_dir.iterdir()} if self.hosts_dir.exists() else set(names)
        for ns in namespaces:
            self._write(self.hosts_file(ns), hosts_text(ns, names))
        self._write(self.cluster_file, json.dumps({"services": cluster}, indent=1, sort_keys=True) + "\n")

    def ensure_hosts(self, namespace: str) -> Path:
        """The namespace's hosts file (created empty of Services when new), to bind-mount into a pod."""
        path = self.hosts_file(namespace)
        if not path.exists():
            self._write(path, hosts_text(namespace, {}))
        return path

    def _write(self, path: Path, text: str) -> None:
        """Rewrite in place (same inode): running pods see the file they bind-mounted change."""
        if self._files.get(path) == text and path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as fh:
            fh.seek(0)
            if fh.read() != text:
                fh.seek(0)
                fh.truncate()
                fh.write(text)
        self._files[path] = text


def hosts_text(namespace: str, names: dict[str, list[tuple[str, str]]]) -> str:
    """/etc/hosts for pods in `namespace`: every Service by its cluster names, short names for its own."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost"]
    for ns in sorted(names):
        for ip, name in sorted(names[ns], key=lambda x: x[1]):
            aliases = [f"{name}.{ns}.{CLUSTER_DOMAIN}", f"{name}.{ns}"] + ([name] if ns == namespace else [])
            lines.append(f"{ip}\t{' '.join(aliases)}")
    return "\n".join(lines) + "\n"
