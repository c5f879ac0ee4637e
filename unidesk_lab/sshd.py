"""Per-host sshd: generated host keys, one client key, a known_hosts both asyncssh and OpenSSH read.

Sessions get the host's environment through `SetEnv` (applied after sshd's own defaults, so it
wins for `ssh host cmd` too): PATH with the host's bin dir first (a BuildKit-capable docker client;
/usr/local/bin/docker 28 lacks buildx and must not win), DOCKER_HOST = the host's own dockerd, and
HOME = the host's own home (its own ~/.gitconfig and ~/.docker, and no operator dotfiles).
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from unidesk_lab.daemon import Daemon
from unidesk_lab.layout import HOSTS, SSH_USER, Layout
from unidesk_lab.netns import tcp_open

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The docker client on a host's PATH: Debian's 20.10 client, which builds with BuildKit.
_DOCKER_WRAPPER = """#!/bin/sh
# Lab host docker client: Debian's docker 20.10 (built-in BuildKit); /usr/local/bin/docker has no buildx.
: "${DOCKER_BUILDKIT:=1}"
export DOCKER_BUILDKIT
exec /usr/bin/docker "$@"
"""


def _key(path: Path) -> asyncssh.SSHKey:
    """Load the ed25519 key at `path`, generating it on first use."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment=path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    key.write_private_key(str(path))
    os.chmod(path, 0o600)
    key.write_public_key(str(path) + ".pub")
    return key


def host_key_path(lay: Layout, host: str) -> Path:
    return lay.host_root(host) / "etc" / "ssh" / "ssh_host_ed25519_key"


def sshd_config_path(lay: Layout, host: str) -> Path:
    return lay.host_root(host) / "etc" / "ssh" / "sshd_config"


def session_env(lay: Layout, host: str) -> dict[str, str]:
    return {
        "PATH": f"{lay.bin_dir(host)}:{SYSTEM_PATH}",
        "DOCKER_HOST": f"unix://{lay.docker_socket(host)}",
        "HOME": str(lay.home(host)),
    }


def prepare(lay: Layout) -> None:
    """Keys, known_hosts, client config, and each host's sshd_config, bin dir and home."""
    client = _key(lay.identity_file)
    lay.authorized_keys.write_text(client.export_public_key("openssh").decode())
    known, config = [], []
    for host in HOSTS:
        hk = _key(host_key_path(lay, host))
        addr = lay.address(host)
        known.append(f"{host},{addr} {hk.export_public_key('openssh').decode().strip()}\n")
        config.append(
            f"Host {host} {addr}\n  HostName {addr}\n  User {SSH_USER}\n  IdentityFile {lay.identity_file}\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {lay.known_hosts}\n  StrictHostKeyChecking yes\n"
            f"  BatchMode yes\n  LogLevel ERROR\n"
        )
        _write_host(lay, host)
    lay.known_hosts.write_text("".join(known))
    lay.ssh_config.write_text("".join(config))


def _write_host(lay: Layout, host: str) -> None:
    bindir = lay.bin_dir(host)
    bindir.mkdir(parents=True, exist_ok=True)
    wrapper = bindir / "docker"
    wrapper.write_text(_DOCKER_WRAPPER)
    wrapper.chmod(0o755)
    compose = bindir / "docker-compose"
    if not compose.is_symlink():
        compose.unlink(missing_ok=True)
        compose.symlink_to("/usr/bin/docker-compose")
    home = lay.home(host)
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text("[user]\n\tname = UniDesk Deploy\n\temail = deploy@unidesk.invalid\n")
    env = " ".join(f"{k}={v}" for k, v in session_env(lay, host).items())
    sshd_config_path(lay, host).write_text(
        f"""# lab sshd for {host}
Port 22
ListenAddress {lay.address(host)}
HostKey {host_key_path(lay, host)}
PidFile {lay.host_root(host)}/run/sshd.pid
AuthorizedKeysFile {lay.authorized_keys}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
# root is locked here: with UsePAM no, sshd refuses even key logins.
UsePAM yes
# keys live under the lab dir (e.g. /tmp), which StrictModes would reject.
StrictModes no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
X11Forwarding no
PrintMotd no
UseDNS no
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp internal-sftp
# as Debian ships it: a client's other variables (e.g. http_proxy) are not accepted
AcceptEnv LANG LC_*
SetEnv {env}
"""
    )
    (lay.host_root(host) / "run").mkdir(parents=True, exist_ok=True)


def daemon(lay: Layout, host: str) -> Daemon:
    addr = lay.address(host)
    return Daemon(
        host=host,
        name="sshd",
        argv=["/usr/sbin/sshd", "-D", "-e", "-f", str(sshd_config_path(lay, host))],
        ready=lambda: tcp_open(addr, 22),
        in_host=True,
    )
