"""The reliability suites' published figures.

Each suite calls `publish` with its figures; they are printed and written as JSON to the results
dir ($UNIDESK_RELIABILITY_DIR, default /tmp/unidesk-reliability). `python -m tests.reliability.report`
turns the results into docs/reliability.md, stamped with the digest of the suites' sources, so a
test (tests/test_reliability_doc.py) fails when the committed document is older than the suites.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

SUITES = Path(__file__).resolve().parent
REPO = SUITES.parent.parent
DOC = REPO / "docs" / "reliability.md"


def results_dir() -> Path:
    return Path(os.environ.get("UNIDESK_RELIABILITY_DIR", "/tmp/unidesk-reliability"))


def suites_digest() -> str:
    """sha256 over the suites' sources (tests/reliability/*.py, this file and the report included)."""
    h = hashlib.sha256()
    for path in sorted(SUITES.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def publish(suite: str, title: str, figures: dict[str, object], command: str) -> str:
    """Record one suite's figures; returns the text printed for them."""
    doc = {"suite": suite, "title": title, "figures": figures, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "command": command, "digest": suites_digest()}
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{suite}.json").write_text(json.dumps(doc, indent=2) + "\n")
    return f"\n[{suite}] {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()) + "\n"
