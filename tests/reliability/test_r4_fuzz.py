"""R4: generated manifests and configs (hypothesis), and an injection corpus across every string
field of deploy.json and config.json: 0 tracebacks, 0 `internal_error`, 0 canaries.

The generated documents go through the real parsers (parse_manifest, parse_catalog); the corpus
goes through the real plan (`run_plan`: parse, join, git resolution, live read attempt) with
payloads that would create a canary file if any reached a shell, git or ssh as code or as an option.
"""

from __future__ import annotations

import copy
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import catalog_doc
from unidesk_tui.catalog import parse_catalog
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.live import read_live
from unidesk_tui.manifest import parse_manifest
from unidesk_tui.planning import run_plan
from unidesk_tui.workspace import Workspace

GENERATED = 10_000  # half manifests, half configs
TALLY = {"cases": 0, "tracebacks": 0, "internal_error": 0, "unserializable": 0}

_text = st.text(st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\udfff", "-", "$", "`", "\n", "\x00"]), max_size=40)
_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | _text | st.sampled_from(
    ["a", "backend-core", "main-server", "D601", "unidesk-direct", "k3sctl-managed", "file:///x.git", "0c3cdb4e", "dev"])
_json = st.recursive(_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_text | st.sampled_from(
    ["schemaVersion", "services", "id", "repo", "commitId", "environment", "targets", "microservices", "ssh", "host",
     "deployment", "mode", "target", "build", "image", "environments", "port", "k3s"]), kids, max_size=5), max_leaves=30)


def _raw(value) -> list[bytes]:
    """The document as JSON, plus odd encodings of it (latin-1, a huge number, deep nesting)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    return [text.encode("utf-8", "surrogatepass"), text.encode("utf-8", "replace")[:-1] + b"\xff"]


def _check(parse, data: bytes) -> None:
    TALLY["cases"] += 1
    try:
        parse(data)
    except UnideskError as exc:
        for p in exc.problems:
            TALLY["internal_error"] += p.code == ErrorCode.INTERNAL
            try:
                json.dumps(p.to_dict(), ensure_ascii=False).encode()
            except (TypeError, ValueError):
                TALLY["unserializable"] += 1
    except Exception:  # noqa: BLE001  (a traceback would reach the user)
        TALLY["tracebacks"] += 1


@settings(max_examples=GENERATED // 4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(_json)
def test_r4_generated_manifests(doc):
    for data in _raw(doc) + _raw({"schemaVersion": 1, "services": [doc]}):
        _check(parse_manifest, data)


@settings(max_examples=GENERATED // 4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(_json, st.sampled_from(["targets", "microservices", "environments", "microserviceProxy"]))
def test_r4_generated_configs(doc, key):
    base = catalog_doc("file:///x.git")
    for data in _raw(doc) + _raw({**base, key: doc}):
        _check(parse_catalog, data)


PAYLOADS = [
    "$(touch {c}/dollar)", "`touch {c}/backtick`", ";touch {c}/semicolon", "|touch {c}/pipe", "&&touch {c}/and",
    "-oProxyCommand=touch {c}/proxy", "--upload-pack=touch {c}/uploadpack", "x\ntouch {c}/newline",
    "../../../../{c}/traversal", "ext::sh -c touch% {c}/ext",
]


def _string_paths(value, path=()):
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _string_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _string_paths(v, (*path, i))


def _set(doc, path, value):
    out = copy.deepcopy(doc)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def test_r4_injection_corpus_and_figures(git_world, tmp_path, figures):
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    w = git_world
    config = catalog_doc(w.service_url)
    manifest = json.loads(w.manifest([{"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[-1][:7]}]))
    cases = [("config.json", p) for p in _string_paths(config)] + [("deploy.json", p) for p in _string_paths(manifest)]
    plans = 0
    ws = Workspace.at(w.workspace, tmp_path / "state")
    for name, path in cases:
        for payload in PAYLOADS:
            value = payload.format(c=canaries)
            doc = _set(config if name == "config.json" else manifest, path, value)
            (w.workspace / name).write_text(json.dumps(doc))
            try:
                run = run_plan(ws, "plan", read_live=read_live)
                plans += 1
                codes = [e.code for e in run.document.errors]
                TALLY["internal_error"] += codes.count(ErrorCode.INTERNAL)
                run.document.model_dump_json()
            except Exception:  # noqa: BLE001
                TALLY["tracebacks"] += 1
        (w.workspace / "config.json").write_text(json.dumps(config))
        (w.workspace / "deploy.json").write_text(json.dumps(manifest))
    found = sorted(os.listdir(canaries)) + [p for p in ("/tmp/dollar", "/tmp/proxy") if os.path.exists(p)]
    figures("R4", "generated inputs and injection corpus", {
        "generated_documents": TALLY["cases"] // 2, "parse_cases": TALLY["cases"], "injection_plans": plans,
        "string_fields": len(cases), "payloads": len(PAYLOADS),
        "tracebacks": TALLY["tracebacks"], "internal_error": TALLY["internal_error"],
        "unserializable_errors": TALLY["unserializable"], "canaries": len(found),
    })
    assert TALLY["cases"] // 2 >= GENERATED, "run the whole file: the generated cases are counted here"
    assert TALLY["tracebacks"] == 0 and TALLY["internal_error"] == 0 and TALLY["unserializable"] == 0 and found == []
