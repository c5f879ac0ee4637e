"""Lab daemons: start one inside a host's namespaces, wait until it is ready, stop it by pidfile.

Each host has an "init" process holding the host's namespaces: started with `nsenter --net=<host
netns> unshare --mount --uts --propagation slave`, it mounts a private tmpfs on /run (so the host's
dockerd, containerd, sshd sessions and ctr share one /run, as on a real machine, and never see
another host's) and sets the hostname. Every other daemon of the host joins it with
`nsenter -t <init> -m -u -n`. (`ip netns exec` is avoided: it remounts /sys and hides the cgroup
tree from dockerd.) nsenter/unshare/sh all exec, so the pid we get is the daemon's own pid,
recorded in `<dir>/pids/<host>-<name>.pid`; its output goes to `<dir>/logs/<host>-<name>.log`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from unidesk_lab.layout import Layout

log = logging.getLogger(__name__)

# the lab's own Python daemons (`python -m unidesk_lab.…`) import this package from here, whatever the cwd
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_children: dict[int, subprocess.Popen] = {}  # reaped on liveness checks so they never linger as zombies

_INIT = (
    'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/sshd /run/lock && hostname "$1" && exec -a '
    '"unidesk-lab-init $2" sleep infinity'
)


class LabError(RuntimeError):
    """A lab operation failed; the message names the host, the daemon and the tail of its log."""


@dataclass
class Daemon:
    host: str
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    netns: str | None = None  # run inside this network namespace only
    in_host: bool = False  # join the host init's network, mount and UTS namespaces
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 30.0


def pidfile(lay: Layout, host: str, name: str) -> Path:
    return lay.pid_dir / f"{host}-{name}.pid"


def logfile(lay: Layout, host: str, name: str) -> Path:
    return lay.log_dir / f"{host}-{name}.log"


def tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            return "\n".join(fh.read().decode(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def alive(pid: int | None, marker: str | None = None) -> bool:
    """True when `pid` runs (not a zombie) and, given a marker, its command line contains it."""
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        if marker is not None:
            return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        return True
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def read_pid(lay: Layout, host: str, name: str) -> int | None:
    try:
        return int(pidfile(lay, host, name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def running_pid(lay: Layout, host: str, name: str) -> int | None:
    """The daemon's pid when it is running; a stale pidfile (crash, reboot, pid reuse) gives None."""
    pid = read_pid(lay, host, name)
    return pid if alive(pid, f"{lay.dir}/") else None


def spawn(lay: Layout, d: Daemon) -> int:
    """Start `d` (not waiting for readiness); returns its pid."""
    argv = list(d.argv)
    if d.in_host:
        init = running_pid(lay, d.host, "init")
        if init is None:
            raise LabError(f"{d.host}: host init is not running (start the lab with `unidesk lab up`)")
        argv = ["nsenter", "-t", str(init), "-m", "-u", "-n", "--", *argv]
    elif d.netns:
        argv = ["nsenter", f"--net=/run/netns/{d.netns}", "--", *argv]
    lay.log_dir.mkdir(parents=True, exist_ok=True)
    lay.pid_dir.mkdir(parents=True, exist_ok=True)
    logpath = logfile(lay, d.host, d.name)
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "PYTHONPATH": _PACKAGE_ROOT,
    }
    env.update(d.env)
    with open(logpath, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {d.host}/{d.name}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    pidfile(lay, d.host, d.name).write_text(f"{proc.pid}\n")
    log.debug("started %s/%s pid %s: %s", d.host, d.name, proc.pid, argv)
    return proc.pid


def host_init(lay: Layout, host: str) -> Daemon:
    """The process that holds a host's mount/UTS namespaces and its private /run."""
    argv = [
        "unshare",
        "--mount",
        "--uts",
        "--propagation",
        "slave",
        "--",
        "/bin/bash",
        "-c",
        _INIT,
        "init",
        host,
        str(lay.host_root(host)),
    ]
    return Daemon(host=host, name="init", argv=argv, ready=lambda: _has_private_run(lay, host), netns=lay.netns(host))


def _has_private_run(lay: Layout, host: str) -> bool:
    pid = read_pid(lay, host, "init")
    return alive(pid, f"{lay.dir}/")


def failure(lay: Layout, host: str, name: str, what: str) -> LabError:
    return LabError(
        f"{host}: {name} {what}; last lines of {logfile(lay, host, name)}:\n{tail(logfile(lay, host, name))}"
    )


def wait_ready(lay: Layout, daemons: list[Daemon]) -> None:
    """Poll every daemon's readiness together; the first one that dies or times out raises."""
    pending = list(daemons)
    start = time.monotonic()
    while pending:
        for d in list(pending):
            pid = read_pid(lay, d.host, d.name)
            if d.ready():
                pending.remove(d)
            elif not alive(pid):
                raise failure(lay, d.host, d.name, "exited during start-up")
            elif time.monotonic() - start > d.ready_timeout:
                raise failure(lay, d.host, d.name, f"not ready after {d.ready_timeout:.0f}s")
        if pending:
            time.sleep(0.05)


def start(lay: Layout, daemons: list[Daemon]) -> None:
    """Start the daemons that are not already running, then wait for all of them."""
    for d in daemons:
        if running_pid(lay, d.host, d.name) is None:
            spawn(lay, d)
    wait_ready(lay, daemons)


def signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every pid is gone; returns those still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if alive(p)]
        if left:
            time.sleep(0.05)
    return left


def terminate(pids: list[int], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL what is left after `timeout`."""
    pids = [p for p in pids if alive(p)]
    signal_pids(pids, signal.SIGTERM)
    left = wait_gone(pids, timeout)
    if left:
        signal_pids(left, signal.SIGKILL)
        wait_gone(left, 2.0)


def stop(lay: Layout, host: str, name: str, timeout: float = 5.0) -> bool:
    """Stop one daemon by its pidfile; True if it was running."""
    pid = running_pid(lay, host, name)
    pidfile(lay, host, name).unlink(missing_ok=True)
    if pid is None:
        return False
    terminate([pid], timeout)
    return True
