"""deploy.json validation: every rule of the spec, every problem reported at once."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.manifest import DeployManifest, parse_manifest, validate_document

SHA = "0c3cdb4ee06a23361ed511a2da033d67b53d16f4"
GOOD = {"id": "code-queue", "repo": "https://github.com/pikasTech/unidesk", "commitId": SHA}


def problems(doc) -> list[tuple[str, str | None]]:
    with pytest.raises(UnideskError) as exc:
        validate_document(doc)
    return [(p.code, p.path) for p in exc.value.problems]


def test_spec_example_is_valid():
    m = parse_manifest(json.dumps({"schemaVersion": 1, "environment": "prod", "services": [GOOD]}))
    assert m.environment == "prod" and m.services[0].commitId == SHA


def test_environment_is_optional_but_exact():
    assert validate_document({"schemaVersion": 1, "services": [GOOD]}).environment is None
    for bad in ("Prod", "staging", "", None, 1):
        assert problems({"schemaVersion": 1, "environment": bad, "services": [GOOD]}) == [
            (ErrorCode.INVALID_VALUE, "environment")
        ]


@pytest.mark.parametrize("version", [0, 2, "1", 1.5, True, None])
def test_schema_version_must_be_1(version):
    assert problems({"schemaVersion": version, "services": [GOOD]}) == [(ErrorCode.INVALID_VALUE, "schemaVersion")]


@pytest.mark.parametrize(
    "key",
    [
        "providerId",
        "port",
        "ports",
        "composeService",
        "namespace",
        "healthPath",
        "env",
        "environment",
        "dockerfile",
        "dockerfilePath",
        "buildCommand",
        "image",
        "imageName",
        "provider",
    ],
)
def test_forbidden_service_fields_name_their_path(key):
    doc = {"schemaVersion": 1, "services": [GOOD, {**GOOD, "id": "other", key: "x"}]}
    assert problems(doc) == [(ErrorCode.FORBIDDEN_FIELD, f"services[1].{key}")]


def test_forbidden_and_unknown_top_level_fields():
    doc = {"schemaVersion": 1, "services": [GOOD], "namespace": "unidesk", "owner": "me"}
    assert sorted(problems(doc)) == [(ErrorCode.FORBIDDEN_FIELD, "namespace"), (ErrorCode.UNKNOWN_FIELD, "owner")]


def test_all_problems_reported_together():
    doc = {
        "schemaVersion": 2,
        "environment": "qa",
        "services": [
            {"id": "Bad_Id", "repo": "-oProxyCommand=x", "commitId": "xyz", "port": 80},
            {**GOOD, "extra": 1},
            GOOD,
            {"repo": GOOD["repo"]},
        ],
    }
    got = problems(doc)
    assert (ErrorCode.INVALID_VALUE, "schemaVersion") in got
    assert (ErrorCode.INVALID_VALUE, "environment") in got
    assert (ErrorCode.INVALID_VALUE, "services[0].id") in got
    assert (ErrorCode.INVALID_VALUE, "services[0].repo") in got
    assert (ErrorCode.INVALID_VALUE, "services[0].commitId") in got
    assert (ErrorCode.FORBIDDEN_FIELD, "services[0].port") in got
    assert (ErrorCode.UNKNOWN_FIELD, "services[1].extra") in got
    assert (ErrorCode.DUPLICATE_SERVICE, "services[2].id") in got
    assert (ErrorCode.MISSING_FIELD, "services[3].id") in got
    assert (ErrorCode.MISSING_FIELD, "services[3].commitId") in got


@pytest.mark.parametrize("services", [[], {}, "x", None])
def test_services_must_be_a_non_empty_list(services):
    assert problems({"schemaVersion": 1, "services": services}) == [(ErrorCode.INVALID_VALUE, "services")]


@pytest.mark.parametrize("commit", ["abc", "a" * 41, "g123", "", 1234, "abcd ", "abcd\n"])
def test_commit_id_is_4_to_40_hex(commit):
    assert problems({"schemaVersion": 1, "services": [{**GOOD, "commitId": commit}]}) == [
        (ErrorCode.INVALID_VALUE, "services[0].commitId")
    ]


@pytest.mark.parametrize("commit", ["abcd", "ABCD1234", SHA])
def test_commit_id_accepts_short_and_full(commit):
    validate_document({"schemaVersion": 1, "services": [{**GOOD, "commitId": commit}]})


@pytest.mark.parametrize(
    "repo",
    [
        "https://github.com/pikasTech/unidesk",
        "http://10.0.0.1/git/x.git",
        "ssh://git@github.com/x/y",
        "git://h/x",
        "file:///srv/git/x.git",
        "git@github.com:pikasTech/unidesk.git",
    ],
)
def test_repo_urls_accepted(repo):
    validate_document({"schemaVersion": 1, "services": [{**GOOD, "repo": repo}]})


@pytest.mark.parametrize(
    "repo",
    [
        "-oProxyCommand=id",
        "https://x/$(id)",
        "https://x/a;id",
        "https://x/a b",
        "https://x/a\nb",
        "ftp://x/y",
        "/srv/git/x.git",
        "ext::sh -c id",
        "https://`id`",
        "",
        "https://alice:S3CRET@h/x",
        "https://ghp_S3CRET@h/x",
        "ssh://git:S3CRET@h/x",
        "ssh://git@-oProxyCommand=id/x",
        "git@-oProxyCommand=id:x.git",
        "ssh://git@-h/x",
        "https://-h/x",
        "git@-h:x.git",
    ],
)
def test_malicious_or_odd_repo_urls_rejected(repo):
    assert problems({"schemaVersion": 1, "services": [{**GOOD, "repo": repo}]}) == [
        (ErrorCode.INVALID_VALUE, "services[0].repo")
    ]


def test_credentials_in_repo_urls_are_refused_and_never_echoed():
    with pytest.raises(UnideskError) as exc:
        validate_document({"schemaVersion": 1, "services": [{**GOOD, "repo": "https://alice:S3CRET@github.com/x/y"}]})
    message = exc.value.problems[0].message
    assert "S3CRET" not in message and "alice" not in message and "credentials" in message


def test_ssh_user_is_not_a_credential():
    validate_document({"schemaVersion": 1, "services": [{**GOOD, "repo": "ssh://git@github.com/pikasTech/unidesk"}]})


@pytest.mark.parametrize("sid", ["-rf", "a;b", "$(id)", "a\nb", "A", "a_b", "-", "a" * 64, "x-"])
def test_malicious_or_odd_ids_rejected(sid):
    assert problems({"schemaVersion": 1, "services": [{**GOOD, "id": sid}]}) == [
        (ErrorCode.INVALID_VALUE, "services[0].id")
    ]


def test_unparseable_json_names_line_and_column():
    with pytest.raises(UnideskError) as exc:
        parse_manifest('{\n  "schemaVersion": 1,\n  "services": [,]\n}')
    p = exc.value.problems[0]
    assert p.code == ErrorCode.MANIFEST_INVALID and "line 3, column 16" in p.message


def test_duplicate_keys_rejected():
    with pytest.raises(UnideskError) as exc:
        parse_manifest('{"schemaVersion": 1, "schemaVersion": 1, "services": []}')
    assert exc.value.problems[0].code == ErrorCode.MANIFEST_INVALID


def test_non_utf8_and_non_object():
    for data in (b"\xff\xfe", b"[]", b"null", b'"x"'):
        with pytest.raises(UnideskError) as exc:
            parse_manifest(data)
        assert exc.value.problems[0].code == ErrorCode.MANIFEST_INVALID


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)
service_like = st.fixed_dictionaries(
    {
        "id": st.one_of(st.text(max_size=8), st.just("svc")),
        "repo": st.one_of(st.text(max_size=8), st.just("https://h/r")),
        "commitId": st.one_of(st.text(alphabet="0123456789abcdefg\n", max_size=42), json_values),
    },
    optional={"port": json_values, "x": json_values},
)
manifest_like = st.fixed_dictionaries(
    {
        "schemaVersion": st.one_of(st.just(1), json_values),
        "services": st.one_of(st.lists(service_like, max_size=4), json_values),
    },
    optional={"environment": st.one_of(st.sampled_from(["dev", "prod"]), json_values), "image": json_values},
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, manifest_like))
def test_any_json_gives_a_model_or_coded_errors(doc):
    try:
        model = parse_manifest(json.dumps(doc))
    except UnideskError as exc:
        assert exc.problems and all(p.code in set(ErrorCode) and p.message for p in exc.problems)
    else:
        assert isinstance(model, DeployManifest)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_gives_a_model_or_coded_errors(text):
    try:
        parse_manifest(text)
    except UnideskError as exc:
        assert exc.problems[0].code in set(ErrorCode)
