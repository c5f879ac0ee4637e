"""The package structure holds: no import cycle, executors import only the vocabulary below them,
the core reaches executors only through the registry, and a new deployment mode is one executor
module plus one registry line (tests/fake_mode.py, run through the real engine).

lint-imports (pyproject [tool.importlinter]) checks the named contracts in CI; these checks say
what import-linter cannot: an allowed list (a new core module is forbidden to executors until it is
added here) and cycles anywhere in the product packages.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from pathlib import Path

import grimp
import pytest

from executors import registry
from unidesk_tui import jobs
from unidesk_tui.catalog import load_catalog
from unidesk_tui.documents import FileSourceDoc, JobRecord, PlanItem
from unidesk_tui.engine import JobEngine, step_records
from unidesk_tui.files import atomic_write
from unidesk_tui.model import Environment, JobStatus, StepStatus

PRODUCT = ("unidesk_tui", "executors")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "unidesk" / "config.json"
# What executors may import from the core: the vocabulary, the rules, the catalog and the target
# session (and what those import themselves).
EXECUTOR_MAY_IMPORT = {
    "unidesk_tui",
    "unidesk_tui.model",
    "unidesk_tui.isolation",
    "unidesk_tui.errors",
    "unidesk_tui.identifiers",
    "unidesk_tui.redact",
    "unidesk_tui.catalog",
    "unidesk_tui.targets",
    "unidesk_tui.devrules",
    "unidesk_tui.json_input",
    "unidesk_tui.k3s_only",
}
CORE_MAY_IMPORT = {"executors", "executors.registry", "executors.base"}


@cache
def graph() -> grimp.ImportGraph:
    # TYPE_CHECKING imports are annotations, not dependencies (model names catalog types that way).
    return grimp.build_graph(*PRODUCT, exclude_type_checking_imports=True)


def product_modules() -> list[str]:
    return sorted(m for m in graph().modules if m.split(".")[0] in PRODUCT)


def imports(module: str) -> set[str]:
    return {m for m in graph().find_modules_directly_imported_by(module) if m.split(".")[0] in PRODUCT}


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in product_modules():
        if root in index:
            continue
        work = [(root, iter(sorted(imports(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(imports(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles_in_the_product() -> None:
    assert cycles() == []


def test_cycle_finder_finds_a_cycle() -> None:
    """The check above would pass on an empty graph: prove it sees a real cycle."""
    g = graph()
    g.add_import(importer="unidesk_tui.model", imported="unidesk_tui.plan")
    try:
        assert any("unidesk_tui.model" in c and "unidesk_tui.plan" in c for c in cycles())
    finally:
        g.remove_import(importer="unidesk_tui.model", imported="unidesk_tui.plan")
    assert cycles() == []


def test_executors_import_only_the_vocabulary_below_them() -> None:
    wrong = {
        f"{m} -> {i}"
        for m in product_modules()
        if m.startswith("executors")
        for i in imports(m)
        if i.startswith("unidesk_tui") and i not in EXECUTOR_MAY_IMPORT
    }
    assert wrong == set()


def test_the_core_reaches_executors_only_through_the_registry() -> None:
    wrong = {
        f"{m} -> {i}"
        for m in product_modules()
        if m.startswith("unidesk_tui")
        for i in imports(m)
        if i.startswith("executors") and i not in CORE_MAY_IMPORT
    }
    assert wrong == set()


def test_a_new_mode_is_one_module_and_one_registry_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(registry.EXECUTORS, "fake-mode", "tests.fake_mode:FakeExecutor")  # the one line
    catalog = load_catalog(EXAMPLE)
    item = PlanItem(
        id="fake-task", mode="fake-mode", target=catalog.targets[0].id, action="deploy", reason="a fake mode"
    )
    records, problems = step_records(catalog, [item], Environment.FILE)
    assert problems == [] and [s.name for s in records] == ["prepare", "verify"]
    state = tmp_path / "state"
    job_id = jobs.new_job_id()
    record = JobRecord(
        id=job_id,
        status=JobStatus.QUEUED,
        environment=Environment.FILE,
        source=FileSourceDoc(path="deploy.json"),
        workspace=str(tmp_path),
        services=[item.id],
        plan=[item],
        steps=records,
        createdAt=jobs.now_iso(),
        host=jobs.HOST,
    )
    d = jobs.create_job(state, record)
    atomic_write(d / jobs.CATALOG_FILE, catalog.model_dump_json().encode())

    final = asyncio.run(JobEngine(state, job_id).run())

    assert final.status == JobStatus.SUCCEEDED, final.result
    assert [(s.name, s.status) for s in final.steps] == [
        ("prepare", StepStatus.SUCCEEDED),
        ("verify", StepStatus.SUCCEEDED),
    ]
    verify = final.steps[1]
    assert [(c.layer, c.what, c.expected, c.actual, c.ok) for c in verify.verification] == [
        ("image", "fake label", "fake", "fake", True),
        ("health", "status", "healthy", "healthy", True),
    ]
    on_disk = json.loads((d / jobs.JOB_FILE).read_text())
    assert on_disk["steps"][1]["verification"][1] == {
        "layer": "health",
        "what": "status",
        "expected": "healthy",
        "actual": "healthy",
        "ok": True,
    }
    texts = [e.text for e in jobs.read_events(state, job_id, 0)[0]]
    assert f"prepared fake-task on {catalog.targets[0].id}" in texts and "verified: fake service proves itself" in texts


def test_an_unknown_mode_is_unsupported() -> None:
    from unidesk_tui.errors import ErrorCode, UnideskError

    try:
        registry.executor_for("no-such-mode")
    except UnideskError as exc:
        assert exc.problems[0].code == ErrorCode.UNSUPPORTED_SERVICE
    else:
        raise AssertionError("an unknown mode must be refused")


LIGHT_PROBE = """
import contextlib, io, json, sys
from unidesk_tui.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main(sys.argv[1:])
heavy = ("unidesk_tui.planning", "unidesk_tui.catalog", "unidesk_tui.live", "unidesk_tui.engine", "executors", "yaml",
         "git", "asyncssh", "aiohttp", "textual", "rich", "unidesk_lab.lab")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


@pytest.mark.parametrize("argv", [["job", "list"], ["job", "status", "20261127T081500Z-0a1b2c"], ["--help"]])
def test_job_commands_and_help_start_without_the_heavy_modules(argv, tmp_path) -> None:
    """What bench/startup.py times: `job list`, `job status` and `--help` load none of the planning,
    catalog, live, executor, git, SSH, HTTP, YAML or console modules."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", LIGHT_PROBE, "--state-dir", str(tmp_path), *argv],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
