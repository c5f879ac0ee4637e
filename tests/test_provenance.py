"""Provenance records and the identity verdict (pure logic; the lab tests drive the real targets)."""

from __future__ import annotations

import json

import pytest

from executors.provenance import BuildRecord, commit_tag, judge, new_record, record_path
from unidesk_tui.model import Environment

SHA = "0123456789abcdef0123456789abcdef01234567"
ID_A = "sha256:" + "a" * 64
ID_B = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("unidesk-backend-core:main", "unidesk-backend-core:main-0123456789ab"),
        ("unidesk-code-queue:dev", "unidesk-code-queue:dev-0123456789ab"),
        ("registry.local:5000/org/app", "registry.local:5000/org/app:latest-0123456789ab"),
        ("app@sha256:" + "c" * 64, "app:latest-0123456789ab"),
    ],
)
def test_commit_tag_keeps_repository_and_tag(image: str, tag: str) -> None:
    assert commit_tag(image, SHA) == tag


def test_record_path_is_per_service_scope_and_commit_and_refuses_odd_keys() -> None:
    assert record_path("/w", "backend-core", "base", SHA) == f"/w/provenance/backend-core/base/{SHA}.json"
    for bad in (("../x", "base", SHA), ("svc", "../x", SHA), ("svc", "base", SHA[:12]), ("svc", "-x", SHA)):
        with pytest.raises(ValueError):
            record_path("/w", *bad)


def test_record_round_trips_and_malformed_ones_are_not_trusted() -> None:
    record = new_record("backend-core", Environment.FILE, SHA, "unidesk-backend-core:main", ID_A, "http://git/x.git")
    assert record.scope == "base" and record.commitTag == "unidesk-backend-core:main-0123456789ab"
    assert BuildRecord.from_json(record.to_json()) == record
    doc = json.loads(record.to_json())
    assert BuildRecord.from_json(json.dumps({**doc, "imageId": "sha256:short"})) is None
    assert BuildRecord.from_json(json.dumps({k: v for k, v in doc.items() if k != "commit"})) is None
    assert BuildRecord.from_json("not json") is None
    assert new_record("code-queue", Environment.DEV, SHA, "unidesk-code-queue:dev", ID_A, "r").scope == "dev"


def test_judge_names_both_ids_and_never_calls_an_unrecorded_image_a_mismatch() -> None:
    record = new_record("backend-core", Environment.FILE, SHA, "unidesk-backend-core:main", ID_A, "r")
    proven = judge(record, ID_A, SHA)
    assert proven.status == "proven" and proven.evidence() == {"status": "proven", "running": ID_A, "recorded": ID_A}
    mismatch = judge(record, ID_B, SHA)
    assert mismatch.status == "mismatch" and ID_A[:19] in mismatch.message and ID_B[:19] in mismatch.message
    assert mismatch.evidence() == {"status": "mismatch", "running": ID_B, "recorded": ID_A}
    assert judge(None, ID_B, SHA).status == "unrecorded"
    assert judge(record, None, SHA).status == "unknown"
