"""The reliability suites' published figures.

Each suite calls `publish` with its figures; they are printed and written as JSON to the results
dir ($UNIDESK_RELIABILITY_DIR, default build/reliability in the checkout). `python -m tests.reliability.report`
turns the results into docs/reliability.md, each section stamped with the digest of its suite's
sources, so a test (tests/test_reliability_doc.py) fails when the document is older than a suite.
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
    return Path(os.environ.get("UNIDESK_RELIABILITY_DIR", REPO / "build" / "reliability"))


def suite_digest(suite_file: str | Path) -> str:
    """sha256 over one suite's source and the shared machinery (this file, conftest, report)."""
    h = hashlib.sha256()
    for path in [SUITES / "figures.py", SUITES / "conftest.py", SUITES / "report.py", Path(suite_file)]:
        h.update(path.name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def publish(suite: str, title: str, figures: dict[str, object], suite_file: str) -> str:
    """Record one suite's figures; returns the text printed for them."""
    name = Path(suite_file).name
    doc = {"suite": suite, "title": title, "figures": figures, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "file": name, "command": f"pytest -q tests/reliability/{name}", "digest": suite_digest(suite_file)}
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{suite}.json").write_text(json.dumps(doc, indent=2) + "\n")
    return f"\n[{suite}] {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()) + "\n"
