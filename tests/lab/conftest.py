"""Lab tests: the session `lab` fixture is tests/lab/session.py's (registered by tests/conftest.py)."""

from tests.lab.session import TEST_LAB_DIR, claim_lab_dir, lab_skip_reason  # noqa: F401  (imported from here)
