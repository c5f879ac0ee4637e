"""docs/reliability.md is generated from the reliability suites' output; it must not be older than
any suite (issue 13)."""

from __future__ import annotations

from tests.reliability.figures import DOC, SUITES, suite_digest


def test_reliability_doc_is_as_new_as_every_suite():
    text = DOC.read_text()
    for suite in sorted(SUITES.glob("test_*.py")):
        assert f"<!-- {suite.name} digest: {suite_digest(suite)} -->" in text, (
            f"docs/reliability.md is older than tests/reliability/{suite.name}: run it, then python -m "
            "tests.reliability.report"
        )
