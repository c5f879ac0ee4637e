"""Network namespaces of a lab: hosts on a private bridge, the git remote on a separate "wan".

The bridges live in their own namespace (a root-namespace dockerd's `FORWARD DROP` with
br_netfilter would otherwise block them). The operator (root namespace) gets one veth onto each
bridge so tests and the CLI reach every sshd, the microservice proxy and the git remote.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from pathlib import Path

from unidesk_lab.layout import GIT, HOSTS, MAIN, MAX_SLOTS, Layout
from unidesk_tui.files import flocked

NETNS_DIR = Path("/run/netns")
LOCK_FILE = Path("/run/lock/unidesk-lab.lock")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    pass


def _ip(*args: str, batch: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["ip", *args] + (["-batch", "-"] if batch is not None else [])
    proc = subprocess.run(argv, input=batch, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed: {proc.stderr.strip()}\n{batch or ''}")
    return proc


def existing() -> set[str]:
    try:
        return {p.name for p in NETNS_DIR.iterdir()}
    except FileNotFoundError:
        return set()


def allocation_lock():
    """Serialises slot allocation between labs brought up at the same time."""
    return flocked(LOCK_FILE)


def _routes_in_use() -> str:
    return _ip("-4", "route", "show", "table", "all").stdout + _ip("-4", "addr").stdout


def pick_slot(dir: Path) -> Layout:
    """The first slot whose namespaces, interfaces and subnets are all unused on this machine."""
    names = existing()
    used = _routes_in_use()
    links = _ip("-o", "link").stdout
    for slot in range(MAX_SLOTS):
        lay = Layout(Path(dir), slot)
        if any(n in names for n in lay.all_netns()):
            continue
        if f"10.231.{slot}." in used or f"10.232.{slot}." in used:
            continue
        if any(f" {i}@" in links or f" {i}:" in links for i in lay.operator_ifaces):
            continue
        return lay
    raise NetnsError("no free lab slot (10.231.0-199.0/24 all in use)")


def create(lay: Layout) -> None:
    """Namespaces, bridges, veths and addresses; an error leaves partial state for `destroy`."""
    net = lay.bridge_netns
    hosts = [*HOSTS, GIT]
    lan_if, wan_if = lay.operator_ifaces
    root = [f"netns add {lay.netns(h)}" for h in [*hosts, "net"]]
    root += [
        f"link add {lan_if} type veth peer name op-lan netns {net}",
        f"link add {wan_if} type veth peer name op-wan netns {net}",
        f"addr add {lay.address('operator')}/24 dev {lan_if}",
        f"addr add {lay.wan_address('operator')}/24 dev {wan_if}",
        f"link set {lan_if} up",
        f"link set {wan_if} up",
    ]
    _ip(batch="\n".join(root) + "\n")
    bridge = ["link set lo up", "link add lan type bridge", "link add wan type bridge"]
    bridge += ["link set lan up", "link set wan up"]
    bridge += ["link set op-lan master lan up", "link set op-wan master wan up"]
    per_host: dict[str, list[str]] = {h: ["link set lo up"] for h in hosts}
    for h in HOSTS:
        port = f"{h.lower()[:8]}-lan"
        bridge += [f"link add {port} type veth peer name eth0 netns {lay.netns(h)}", f"link set {port} master lan up"]
        per_host[h] += [f"addr add {lay.address(h)}/24 dev eth0", "link set eth0 up"]
    for h, dev in ((MAIN, "eth1"), (GIT, "eth0")):
        port = f"{h.lower()[:8]}-wan"
        bridge += [f"link add {port} type veth peer name {dev} netns {lay.netns(h)}", f"link set {port} master wan up"]
        per_host[h] += [f"addr add {lay.wan_address(h)}/24 dev {dev}", f"link set {dev} up"]
    _ip("-n", net, batch="\n".join(bridge) + "\n")
    # main-server reaches D601's pods and Service addresses (the frontend's proxy path); nobody else routes there
    per_host[MAIN] += [f"route add {cidr} via {lay.address('D601')}" for cidr in (lay.pod_cidr, lay.service_cidr)]
    for h, cmds in per_host.items():
        _ip("-n", lay.netns(h), batch="\n".join(cmds) + "\n")


def pids(name: str) -> list[int]:
    """Processes whose network namespace is `name` (`ip netns pids`)."""
    if name not in existing():
        return []
    out = _ip("netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def destroy(lay: Layout) -> list[str]:
    """Delete the lab's namespaces and operator veths; returns what it removed."""
    removed = []
    names = existing()
    for ns in lay.all_netns():
        if ns in names:
            _ip("netns", "del", ns, check=False)
            removed.append(ns)
    for iface in lay.operator_ifaces:
        if _ip("link", "show", iface, check=False).returncode == 0:
            _ip("link", "del", iface, check=False)
            removed.append(iface)
    return removed


def present(lay: Layout) -> bool:
    names = existing()
    return all(n in names for n in lay.all_netns())


def in_netns(ns: str, fn, *args):
    """Run `fn(*args)` on a thread that has joined namespace `ns` (setns is per thread)."""
    result: dict = {}

    def body():
        try:
            fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {ns}")
            finally:
                os.close(fd)
            result["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def setns_process(ns: str) -> None:
    """Move the calling (single-threaded) process into namespace `ns`."""
    fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
    finally:
        os.close(fd)


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tcp_open_in(ns: str | None, host: str, port: int) -> bool:
    """Is something listening on host:port as seen from namespace `ns` (None: this one)?"""
    if ns is None:
        return tcp_open(host, port)
    try:
        return in_netns(ns, tcp_open, host, port)
    except OSError:
        return False
