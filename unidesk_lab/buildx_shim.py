"""A `docker-buildx` shim for one lab host: it stands in for the buildx CLI plugin.

No package reachable here ships buildx (LAB-NOTES.md), so without it the build step always takes
its fallback (`DOCKER_BUILDKIT=1 docker build --build-arg BUILDKIT_INLINE_CACHE=1`). The shim lets
a lab test exercise the other branch end to end: installed, it sits first on the host's SSH PATH
(`<host>/bin/docker-buildx`) and is linked into the host's `~/.docker/cli-plugins/`, so the real
docker client (20.10) discovers it as a CLI plugin and dispatches `docker buildx …` to it. It
records each invocation's argv (one JSON array per line in `<host>/buildx-shim.argv.jsonl`), then
runs the same build with the daemon's built-in BuildKit: `--load` is dropped (the classic builder
loads into the daemon anyway) and `--cache-to type=inline` becomes `BUILDKIT_INLINE_CACHE=1`;
every other flag (`--network host`, `--cache-from`, build args, labels) is passed unchanged. It is
a test stand-in only, never installed by `lab up`.
"""

from __future__ import annotations

import json
from pathlib import Path

from unidesk_lab.layout import Layout

NAME = "docker-buildx"
DOCKER = "/usr/bin/docker"  # Debian's 20.10 client, with the built-in BuildKit

_SCRIPT = '''#!/usr/bin/python3
"""docker-buildx shim of the UniDesk lab: records argv, builds with the built-in BuildKit."""
import json, os, sys

LOG = {log!r}
args = sys.argv[1:]
if args[:1] == ["docker-cli-plugin-metadata"]:  # the docker CLI's plugin handshake
    print(json.dumps({{"SchemaVersion": "0.1.0", "Vendor": "UniDesk Lab", "Version": "v0.0.0-lab-shim",
                      "ShortDescription": "buildx shim: the daemon's built-in BuildKit"}}))
    sys.exit(0)
with open(LOG, "a") as log:
    log.write(json.dumps(sys.argv) + "\\n")
if args[:1] == ["buildx"]:  # the CLI passes the plugin's command name first
    args = args[1:]
if args[:1] == ["version"]:
    print("github.com/docker/buildx v0.0.0-lab-shim (UniDesk lab shim over the built-in BuildKit)")
    sys.exit(0)
if args[:1] != ["build"]:
    sys.stderr.write("docker-buildx lab shim: only `version` and `build` are supported\\n")
    sys.exit(2)
out, i = [{docker!r}, "build"], 1
while i < len(args):
    arg = args[i]
    if arg == "--":
        out += args[i:]
        break
    if arg == "--load":
        i += 1
        continue
    if arg == "--cache-to":
        if args[i + 1:i + 2] != ["type=inline"]:
            sys.stderr.write("docker-buildx lab shim: only --cache-to type=inline is supported\\n")
            sys.exit(2)
        out += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
        i += 2
        continue
    out.append(arg)
    i += 1
os.execve(out[0], out, {{**os.environ, "DOCKER_BUILDKIT": "1"}})
'''


def argv_log(lay: Layout, host: str) -> Path:
    return lay.host_root(host) / "buildx-shim.argv.jsonl"


def _plugin_link(lay: Layout, host: str) -> Path:
    return lay.home(host) / ".docker" / "cli-plugins" / NAME


def install(lay: Layout, host: str) -> Path:
    """Put the shim on `host`'s PATH and in its docker CLI plugin dir; returns its argv log."""
    log = argv_log(lay, host)
    log.unlink(missing_ok=True)
    shim = lay.bin_dir(host) / NAME
    shim.write_text(_SCRIPT.format(log=str(log), docker=DOCKER))
    shim.chmod(0o755)
    link = _plugin_link(lay, host)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(shim)
    return log


def remove(lay: Layout, host: str) -> None:
    """Take the shim away again: the host's builds fall back to the built-in BuildKit."""
    _plugin_link(lay, host).unlink(missing_ok=True)
    (lay.bin_dir(host) / NAME).unlink(missing_ok=True)


def recorded(lay: Layout, host: str) -> list[list[str]]:
    """Every argv the shim recorded since it was installed."""
    try:
        text = argv_log(lay, host).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
