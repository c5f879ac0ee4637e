"""docs/reliability.md is generated from the reliability suites' output; it must not be older than
the suites (issue 13)."""

from __future__ import annotations

import re

from tests.reliability.figures import DOC, SUITES, suites_digest


def test_reliability_doc_is_as_new_as_the_suites():
    text = DOC.read_text()
    found = re.search(r"<!-- suites-digest: ([0-9a-f]+) -->", text)
    assert found and found.group(1) == suites_digest(), (
        "docs/reliability.md is older than tests/reliability/: run the suites, then python -m tests.reliability.report")
    for suite in sorted(SUITES.glob("test_*.py")):
        assert f"tests/reliability/{suite.name}" in text, f"{suite.name} has no figures in docs/reliability.md"
