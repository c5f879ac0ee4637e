"""Bring a whole lab up, report its status, tear it down (also after a crash), stop/start one daemon.

up(dir, seed=False) -> status dict      down(dir) -> dict      status(dir) -> dict
reset(dir): a downed lab forgets sample content and emulator state changed by earlier runs
stop_daemon(dir, host, name) / start_daemon(dir, host, name)
stop_egress(dir, host) / start_egress(dir, host)
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from unidesk_lab import daemon as daemons
from unidesk_lab import dockerd, egress, gitserver, k3s, msproxy, netns, registry, sample, sshd
from unidesk_lab import seed as seeding
from unidesk_lab.daemon import Daemon, LabError
from unidesk_lab.layout import GIT, HOSTS, K3S_HOST, MAIN, PROVIDERS, SSH_USER, Layout, default_dir

log = logging.getLogger(__name__)

__all__ = ["LabError", "up", "down", "status", "reset", "stop_daemon", "start_daemon", "stop_egress", "start_egress"]


def _dir(dir: str | Path | None) -> Path:
    return Path(dir or default_dir()).resolve()


GIT_DAEMONS: tuple[str, ...] = ("git-http", "registry")  # the wan side: git remote and image registry


def daemon_names(host: str) -> list[str]:
    """The daemons a host runs, in start order."""
    names = ["init", "sshd", "dockerd"]
    if host == MAIN:
        names += ["msproxy", "msproxy-dev"]
    if host in PROVIDERS:
        names.append("egress")
    if host == K3S_HOST:
        names.append("containerd")
        if k3s.kubeapi_available():
            names.append("kubeapi")
    return names


def daemon_spec(lay: Layout, host: str, name: str) -> Daemon:
    if name == "init":
        return daemons.host_init(lay, host)
    if name == "sshd":
        return sshd.daemon(lay, host)
    if name == "dockerd":
        return dockerd.daemon(lay, host)
    if name == "msproxy" and host == MAIN:
        return msproxy.daemon(lay)
    if name == "msproxy-dev" and host == MAIN:
        return msproxy.daemon(lay, "dev")
    if name == "egress" and host in PROVIDERS:
        return egress.daemon(lay, host)
    if name == "containerd" and host == K3S_HOST:
        return k3s.containerd_daemon(lay)
    if name == "kubeapi" and host == K3S_HOST:
        return k3s.kubeapi_daemon(lay)
    if name == "git-http" and host == GIT:
        return gitserver.daemon(lay)
    if name == "registry" and host == GIT:
        return registry.daemon(lay)
    raise LabError(f"{host}: no daemon named {name!r}")


def up(dir: str | Path | None = None, seed: bool = False) -> dict:
    """Create the lab in `dir` (or complete a running one: idempotent) and return its status."""
    path = _dir(dir)
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, dockerd, sshd)")
    started = time.monotonic()
    lay = Layout.load(path)
    if lay is not None and (not netns.present(lay) or any(daemons.running_pid(lay, h, "init") is None for h in HOSTS)):
        # half-created, crashed, or a host lost the process holding its /run: start over
        down(path)
        lay = None
    if lay is None:
        with netns.allocation_lock():
            lay = netns.pick_slot(path)
            lay.save()
            netns.create(lay)
    _prepare_files(lay)
    sample.ensure(lay)
    stages = [
        [daemon_spec(lay, h, "init") for h in HOSTS] + [daemon_spec(lay, GIT, n) for n in GIT_DAEMONS],
        [daemon_spec(lay, h, n) for h in HOSTS for n in daemon_names(h) if n not in ("init", "kubeapi")],
        [daemon_spec(lay, h, n) for h in HOSTS for n in daemon_names(h) if n == "kubeapi"],
    ]
    for stage in stages:
        daemons.start(lay, stage)
    if "kubeapi" in daemon_names(K3S_HOST):
        k3s.ensure_namespaces(lay)
    registry.seed(lay)  # the pause images (idempotent: existing blobs are not pushed again)
    log.info("lab %s up in %.2fs", path, time.monotonic() - started)
    if seed:
        seeding.run(lay)
    return status(path)


def _prepare_files(lay: Layout) -> None:
    for host in HOSTS:
        for sub in ("run", "etc", "srv/unidesk"):
            (lay.host_root(host) / sub).mkdir(parents=True, exist_ok=True)
        lay.work_dir(host).mkdir(parents=True, exist_ok=True)
        lay.egress_log(host).touch()
    sshd.prepare(lay)
    k3s.write_kubeconfig(lay)


def status(dir: str | Path | None = None) -> dict:
    path = _dir(dir)
    lay = Layout.load(path)
    ssh = {
        "user": SSH_USER,
        "identityFile": str(path / "ssh" / "id_ed25519"),
        "knownHosts": str(path / "ssh" / "known_hosts"),
    }
    doc = {
        "up": False,
        "dir": str(path),
        "workspace": str(path / "workspace"),
        "gitRemote": None,
        "ssh": ssh,
        "hosts": [],
    }
    if lay is None:
        return doc
    doc["gitRemote"] = lay.git_base_url
    present = netns.present(lay)
    everything = present and all(daemons.running_pid(lay, GIT, n) is not None for n in GIT_DAEMONS)
    for host in HOSTS:
        ds = []
        for name in daemon_names(host):
            pid = daemons.running_pid(lay, host, name) if present else None
            ds.append({"name": name, "pid": pid, "running": pid is not None})
            everything = everything and pid is not None
        doc["hosts"].append({"name": host, "address": lay.address(host), "daemons": ds})
    doc["up"] = everything
    return doc


def _descendants(roots: set[int]) -> set[int]:
    """Every process below `roots` (e.g. containers in their own netns under a host's shims)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def down(dir: str | Path | None = None, purge: bool = False) -> dict:
    """Stop every daemon and container, delete namespaces, veths and sockets; safe after a crash.

    The directory keeps its image caches and runtime state (a later `up` reuses them) unless `purge`.
    """
    path = _dir(dir)
    if purge:
        doc = down(path)
        shutil.rmtree(path, ignore_errors=True)
        return {**doc, "purged": True}
    lay = Layout.load(path)
    if lay is None:
        return {"ok": True, "dir": str(path), "stopped": 0, "removed": []}
    first, pids = [], []
    if lay.pid_dir.exists():
        for pf in lay.pid_dir.glob("*.pid"):
            try:
                pid = int(pf.read_text().strip())
            except ValueError:
                continue
            if daemons.alive(pid, f"{path}/"):
                # the emulator drives containerd: stop it while containerd still answers its ctr calls
                (first if pf.stem.endswith("-kubeapi") else pids).append(pid)
    in_netns = {p for ns in lay.all_netns() for p in netns.pids(ns)}
    family = _descendants(set(first) | set(pids) | in_netns) - {os.getpid()}
    daemons.terminate(first, timeout=3.0)
    daemons.terminate(pids, timeout=6.0)
    pids += first
    stragglers = sorted(
        ({p for ns in lay.all_netns() for p in netns.pids(ns)} | in_netns | family) - set(pids) - {os.getpid()}
    )
    daemons.terminate(stragglers, timeout=3.0)
    removed = netns.destroy(lay)
    for pf in lay.pid_dir.glob("*.pid") if lay.pid_dir.exists() else []:
        pf.unlink(missing_ok=True)
    for host in HOSTS:
        run = lay.host_root(host) / "run"
        if run.exists():
            for sock in [p for p in run.rglob("*") if p.is_socket()]:
                sock.unlink(missing_ok=True)
        shutil.rmtree(lay.host_root(host) / "run" / "docker-exec", ignore_errors=True)
    Layout.state_file(path).unlink(missing_ok=True)
    return {"ok": True, "dir": str(path), "stopped": len(pids) + len(stragglers), "removed": removed}


def reset(dir: str | Path | None = None) -> None:
    """Forget what earlier runs changed: sample repos and workspace (regenerated at the next `up`),
    the emulator's objects and the egress logs. Only for a lab that is down; images stay cached."""
    path = _dir(dir)
    lay = Layout.load(path)
    if lay is not None and netns.present(lay):
        raise LabError(f"lab in {path} is running; `down` it before a reset")
    (path / "content.json").unlink(missing_ok=True)
    shutil.rmtree(path / "hosts" / K3S_HOST / "kube", ignore_errors=True)
    for host in HOSTS:
        (path / "hosts" / host / "egress.log").unlink(missing_ok=True)


def stop_daemon(dir: str | Path | None, host: str, name: str) -> bool:
    """Stop one daemon (e.g. D518's sshd); True when it was running."""
    lay = _loaded(dir)
    daemon_spec(lay, host, name)  # validates host/name
    return daemons.stop(lay, host, name)


def start_daemon(dir: str | Path | None, host: str, name: str) -> int:
    """Start one daemon again (no-op when it runs); returns its pid."""
    lay = _loaded(dir)
    daemons.start(lay, [daemon_spec(lay, host, name)])
    pid = daemons.running_pid(lay, host, name) or daemons.read_pid(lay, host, name)
    assert pid is not None
    return pid


def stop_egress(dir: str | Path | None, host: str) -> bool:
    return stop_daemon(dir, host, "egress")


def start_egress(dir: str | Path | None, host: str) -> int:
    return start_daemon(dir, host, "egress")


def _loaded(dir: str | Path | None) -> Layout:
    lay = Layout.load(_dir(dir))
    if lay is None:
        raise LabError(f"no lab in {_dir(dir)} (run `unidesk lab up`)")
    return lay
