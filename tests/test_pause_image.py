"""The k3s sandbox image check: what counts as a real pause image, and where its config is found."""

from __future__ import annotations

import json

import pytest

from executors.containerd import listed_digest
from executors.k3s import K3sExecutor
from executors.pause_image import check_pause_config, sandbox_entrypoint
from unidesk_tui.catalog import K3sNode, parse_catalog
from unidesk_tui.errors import UnideskError
from unidesk_tui.model import DesiredService

D = "sha256:" + "ab" * 32


def cfg(**config) -> str:
    return json.dumps(
        {"architecture": "amd64", "os": "linux", "config": config, "rootfs": {"type": "layers", "diff_ids": []}}
    )


def test_genuine_pause_entrypoint_passes():
    assert check_pause_config(cfg(Entrypoint=["/pause"])) == (True, '["/pause"]')
    assert check_pause_config(cfg(Entrypoint=None, Cmd=["/pause"]))[0]  # Cmd counts when Entrypoint is empty
    assert check_pause_config(cfg(Entrypoint=[], Cmd=["/pause"]))[0]


@pytest.mark.parametrize(
    "config",
    [
        {"Entrypoint": ["/bin/sleep", "infinity"]},
        {"Cmd": ["sleep", "3600"]},
        {"Entrypoint": ["/bin/sh", "-c", "exec /pause"]},
        {"Entrypoint": ["/pause", "--then-sleep"]},
        {"Entrypoint": ["pause"]},
        {"Entrypoint": ["/bin/sleep"], "Cmd": ["/pause"]},
        {},
    ],
)
def test_fake_or_sleep_based_images_are_rejected(config):
    ok, runs = check_pause_config(cfg(**config))
    assert not ok
    assert runs == (
        json.dumps(sandbox_entrypoint({"config": config}))
        if sandbox_entrypoint({"config": config})
        else "empty (no Entrypoint, no Cmd)"
    )


def test_unreadable_config_is_rejected():
    assert check_pause_config("not json") == (False, "an unreadable config (not JSON)")
    assert not check_pause_config("[1, 2]")[0]
    assert not check_pause_config(json.dumps({"config": "x"}))[0]


def test_sleep_entrypoint_is_named():
    assert check_pause_config(cfg(Entrypoint=["/bin/sleep", "infinity"])) == (False, '["/bin/sleep", "infinity"]')


def test_listed_digest_reads_ctr_images_ls():
    listing = (
        "REF                                      TYPE                                                 DIGEST  SIZE  "
        "    PLATFORMS   LABELS\n"
        f"docker.io/rancher/mirrored-pause:3.6     application/vnd.docker.distribution.manifest.v2+json {D} 297.8 "
        "KiB linux/amd64 -\n"
        "docker.io/rancher/mirrored-pause:3.6-x   application/vnd.docker.distribution.manifest.v2+json "
        f"{'sha256:' + 'cd' * 32} 1 KiB linux/amd64 -\n"
    )
    assert listed_digest(listing, "docker.io/rancher/mirrored-pause:3.6") == D
    assert listed_digest(listing, "docker.io/rancher/mirrored-pause:3.7") is None
    assert listed_digest("REF TYPE DIGEST\nx y not-a-digest\n", "x") is None


def test_catalog_pause_image_defaults_and_validation():
    node = K3sNode()
    assert node.pauseImage == "docker.io/rancher/mirrored-pause:3.6" and node.registryPlainHttp is False
    assert K3sNode(pauseImage="10.232.0.10:5000/rancher/mirrored-pause:3.6", registryPlainHttp=True).registryPlainHttp
    for bad in ("rancher/mirrored-pause:3.6", "-docker.io/x:1", "docker.io/x:1 --plain-http", "docker.io/X/y:1"):
        with pytest.raises(ValueError):
            K3sNode(pauseImage=bad)


def test_catalog_reports_a_bad_pause_image_with_its_path():
    doc = {
        "targets": [{"id": "D601", "ssh": {"host": "10.0.0.3"}, "k3s": {"pauseImage": "pause:3.6"}}],
        "microservices": [],
    }
    with pytest.raises(UnideskError) as exc:
        parse_catalog(json.dumps(doc))
    assert exc.value.problems[0].path == "targets[0].k3s.pauseImage"


def test_pause_image_step_runs_before_import_and_apply():
    names = [s.name for s in K3sExecutor().steps(DesiredService("svc", "", "", None, "k3sctl-managed", "node"))]
    assert names.index("k3s-pause-image") < names.index("k3s-import") < names.index("k8s-apply")
    assert names.index("proxy-probe") < names.index("k3s-pause-image")
    assert not next(
        s
        for s in K3sExecutor().steps(DesiredService("svc", "", "", None, "k3sctl-managed", "node"))
        if s.name == "k3s-pause-image"
    ).read_only
