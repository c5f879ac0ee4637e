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


def test_a_suite_that_did_not_run_keeps_its_committed_section_and_lab_variants_follow_their_base():
    from tests.reliability.report import committed, order, render, section

    results = [
        {
            "suite": s,
            "title": "t",
            "figures": {"n": i},
            "date": "d",
            "command": "c",
            "file": f"test_{s}.py",
            "digest": f"{i:016x}",
        }
        for i, s in enumerate(["R2", "R1-lab", "mirror", "R1"])
    ]
    text = render({r["suite"]: section(r) for r in results})
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("## ")] == [
        "## R1",
        "## R1-lab",
        "## R2",
        "## mirror",
    ]
    back = committed(text)
    assert back["R1-lab"][:2] == ("test_R1-lab.py", f"{1:016x}") and "| n | 1 |" in back["R1-lab"][2]
    assert sorted(["R3", "R2-lab", "R5-lab", "R1"], key=order) == ["R1", "R2-lab", "R3", "R5-lab"]
