"""Lab tests: the session `lab` fixture is tests/lab/session.py's (registered by tests/conftest.py)."""

from pathlib import Path

import pytest

from tests.lab.session import TEST_LAB_DIR, claim_lab_dir, lab_skip_reason  # noqa: F401  (imported from here)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A test's own state directory (its jobs and locks)."""
    return tmp_path / "state"
