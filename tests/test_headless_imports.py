"""The headless core never imports textual or rich: checked in a fresh interpreter.

Every module of unidesk_tui (except the console's own) and of executors is imported in turn; the
first one that brings `textual` or `rich` into sys.modules is named.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The console: the only modules allowed to import textual and rich.
CONSOLE = (
    "unidesk_tui.app",
    "unidesk_tui.console",
    "unidesk_tui.messages",
    "unidesk_tui.screens",
    "unidesk_tui.widgets",
)
# Named in the contract: each must stay headless whenever it exists.
REQUIRED = tuple(
    f"unidesk_tui.{m}"
    for m in (
        "errors",
        "identifiers",
        "manifest",
        "catalog",
        "resolve",
        "manifest_source",
        "documents",
        "plan",
        "workspace",
        "planning",
        "model",
        "isolation",
        "engine",
        "cli",
        "jobs",
        "apply",
        "live",
        "targets",
        "worker",
        "locks",
        "plan_cache",
    )
)


def headless_modules() -> list[str]:
    found = []
    for package in ("unidesk_tui", "executors"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(parts)
            if name in CONSOLE or name.startswith(tuple(c + "." for c in CONSOLE)) or "__pycache__" in name:
                continue
            found.append(name)
    return found


PROBE = """
import importlib, json, sys
culprits, failed = [], {}
for name in json.loads(sys.argv[1]):
    before = {m for m in ("textual", "rich") if m in sys.modules}
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed[name] = str(exc)
        continue
    after = {m for m in ("textual", "rich") if m in sys.modules}
    if after - before:
        culprits.append([name, sorted(after - before)])
print(json.dumps({"culprits": culprits, "failed": failed}))
"""


def test_headless_modules_never_import_textual_or_rich() -> None:
    modules = headless_modules()
    assert set(REQUIRED) <= set(modules), "a module the contract names is missing"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["culprits"] == [], f"headless modules import the console stack: {result['culprits']}"
    # A module that cannot even be imported hides what it would import: every dependency ships.
    assert result["failed"] == {}


def test_the_console_modules_do_import_textual() -> None:
    """The check above would be vacuous if the probe could not see textual at all."""
    out = subprocess.run(
        [sys.executable, "-c", "import sys, unidesk_tui.app; print('textual' in sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "True"
