"""The documented API stays true: every error code is documented, schemas are fresh."""

from __future__ import annotations

from pathlib import Path

from unidesk_tui.documents import SHAPES_FILE, schemas, shapes
from unidesk_tui.errors import ErrorCode

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_error_code_is_documented():
    text = (DOCS / "cli.md").read_text()
    missing = [c.value for c in ErrorCode if f"`{c.value}`" not in text]
    assert not missing, f"document these codes in docs/cli.md: {missing}"


def test_schemas_are_fresh():
    for name, text in schemas().items():
        path = DOCS / "schema" / name
        assert path.exists() and path.read_text() == text, f"{path} is stale: run python -m unidesk_tui.documents"


def test_the_light_readers_shapes_are_fresh():
    """job_files.py checks job.json against these; a model change regenerates them."""
    assert SHAPES_FILE.read_text() == shapes(), f"{SHAPES_FILE} is stale: run python -m unidesk_tui.documents"
