"""The deploy-env override: how a compose service gets its `UNIDESK_DEPLOY_*` stamps without the
service's compose file having to mention them.

The rollout writes `unidesk-deploy.<service>.override.yml` beside the service's (first) compose
file on the target and passes it as the last `-f`; the service's own files are never edited. It
sets only the four variables in the service's `environment`, which compose merges over whatever
the service's file says. Compose v1 requires every file of a project to share one format
version, so the override repeats the version `docker compose config` reports.
"""

from __future__ import annotations

import json
import posixpath

from unidesk_tui.identifiers import is_plain_name

PREFIX = "unidesk-deploy."
SUFFIX = ".override.yml"


def override_path(compose_file: str, service: str) -> str:
    if not is_plain_name(service):
        raise ValueError(f"refusing compose service name {service!r}")
    return posixpath.join(posixpath.dirname(compose_file), f"{PREFIX}{service}{SUFFIX}")


def is_override(path: str) -> bool:
    """One of ours (e.g. listed in a container's config_files label)."""
    leaf = posixpath.basename(path)
    return leaf.startswith(PREFIX) and leaf.endswith(SUFFIX)


def _quoted(value: str) -> str:
    """A YAML scalar compose takes literally: JSON-quoted, `$` escaped from interpolation."""
    return json.dumps(value.replace("$", "$$"))


def override_text(service: str, env: dict[str, str], version: str | None) -> str:
    lines = ["# Written by the UniDesk deploy reconciler for each rollout; do not edit (it is replaced).\n"]
    if version:
        lines.append(f"version: {_quoted(version)}\n")
    lines += ["services:\n", f"  {_quoted(service)}:\n", "    environment:\n"]
    lines += [f"      {key}: {_quoted(value)}\n" for key, value in env.items()]
    return "".join(lines)
