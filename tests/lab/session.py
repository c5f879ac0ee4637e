"""The session lab, fixture `lab`: brought up once (with the sample services seeded at an older
commit), down at the end. tests/conftest.py registers it, so tests/lab and tests/reliability share
one lab per pytest session.

Lab tests need root on Linux (network namespaces, dockerd, sshd); elsewhere they skip and say why.
The lab directory is $UNIDESK_TEST_LAB_DIR or /tmp/unidesk-lab-test, apart from the demo's
/tmp/unidesk-lab so a test run never tears down a lab someone is using. A session holds an flock on
`<dir>.lock`; a concurrent session takes the next free `<dir>-<n>` instead of sharing (each lab
gets its own namespaces and subnets), and a lab left by a crashed session is torn down first.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

import pytest

TEST_LAB_DIR = Path(os.environ.get("UNIDESK_TEST_LAB_DIR") or "/tmp/unidesk-lab-test")


def claim_lab_dir(base: Path = TEST_LAB_DIR):
    """(dir, lock handle) of the first lab dir no other running session holds."""
    for i in range(32):
        path = base if i == 0 else base.with_name(f"{base.name}-{i}")
        fh = open(f"{path}.lock", "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        return path, fh
    raise RuntimeError(f"32 concurrent lab sessions hold {base}*")


def lab_skip_reason() -> str | None:
    """Why the lab cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return f"the lab needs Linux network namespaces (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, dockerd, sshd); run the lab tests as root"
    return None


@pytest.fixture(scope="session")
def lab():
    """Status of the running session lab plus convenient paths.

    Keys: the `lab status` document (up, dir, workspace, gitRemote, ssh, hosts) and
    `layout` (unidesk_lab.layout.Layout), `config` (workspace config.json path),
    `content` (sample content: commits old/new/prod, repo URLs), `addresses` {host: addr},
    `dockerSockets` {host: path}, `kubeconfig`, `containerdSocket`, `msproxyUrl`, `sshConfig`.
    """
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    from unidesk_lab import lab as labapi
    from unidesk_lab import sample
    from unidesk_lab.layout import HOSTS, Layout

    path, lock = claim_lab_dir()
    labapi.down(path)  # whatever a crashed earlier session left
    labapi.reset(path)  # and what earlier sessions pushed or applied: every session starts fresh
    try:
        status = labapi.up(path, seed=True)
    except BaseException:
        labapi.down(path)
        lock.close()
        raise
    lay = Layout.load(path.resolve())
    info = dict(status)
    info.update(
        layout=lay,
        config=lay.workspace / "config.json",
        content=sample.content(lay),
        addresses={h: lay.address(h) for h in HOSTS},
        dockerSockets={h: lay.docker_socket(h) for h in HOSTS},
        kubeconfig=lay.kubeconfig,
        containerdSocket=lay.containerd_socket,
        msproxyUrl=lay.msproxy_url,
        sshConfig=lay.ssh_config,
    )
    try:
        yield info
    finally:
        result = labapi.down(path)
        lock.close()
        sys.stderr.write(f"lab down: {json.dumps(result)}\n")
