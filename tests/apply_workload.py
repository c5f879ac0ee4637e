"""A test workload for the job engine: an executor whose steps act on files in a runtime dir.

The engine under test (apply, locks, the detached worker, the job store) is the real one; only the
work the steps do is scripted. `behaviour.json` in the runtime dir picks per-step behaviour:
{"build": "fail" | "silent" | "blank" | "lost" | "sleep" | "hold" | "secret" | "secret-fail" | "session" | "import-planted", "rollout": "stale"}.
"stepSeconds" makes every step last that long (the reliability suites kill workers mid-step).
"hold" records the build's start and end (time, worker pid) in intervals.jsonl and holds for
"holdSeconds" (default 0.5): the reliability suites find overlapping jobs of one service there.
The product has no plugin hook: the worker process imports this module and calls install() at start, from
a `sitecustomize.py` the test puts on its PYTHONPATH (`worker_boot`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import time
from pathlib import Path

from executors import registry
from executors.base import RESTORE_POINT, Executor, RestorePoint, Step
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.model import LiveState, Observation

RUNTIME_ENV = "UNIDESK_TEST_RUNTIME"
MODES = ("unidesk-direct", "internal-sidecar", "k3sctl-managed")
PLANTED_MODULE = "unidesk_planted_probe"


def runtime() -> Path:
    return Path(os.environ[RUNTIME_ENV])


def behaviour() -> dict:
    path = runtime() / "behaviour.json"
    return json.loads(path.read_text()) if path.exists() else {}


def running_commit(service_id: str) -> str | None:
    path = runtime() / f"{service_id}.commit"
    return path.read_text().strip() if path.exists() else None


async def pace() -> None:
    await asyncio.sleep(float(behaviour().get("stepSeconds", 0)))


async def inspect(ctx) -> None:
    live = running_commit(ctx.service.id)
    ctx.emit(f"live commit: {live or 'none'}")
    if live:  # what a real executor records for a restore: the running version
        ctx.shared[RESTORE_POINT] = RestorePoint(live, ctx.service.repo, live, "sha256:" + "0" * 64, "runtime dir")
    await pace()


async def restore(ctx) -> None:
    ctx.emit(f"restoring {ctx.service.commit[:12]}")
    (runtime() / f"{ctx.service.id}.commit").write_text(ctx.service.commit)


async def build(ctx) -> None:
    how = behaviour().get("build")
    if how == "silent":
        return
    if how == "blank":  # output, but no text: not progress
        for text in ("", "\n", "   "):
            ctx.emit(text)
        return
    ctx.emit(f"building {ctx.service.commit[:12]} for {ctx.service.id}")
    if how == "fail":
        ctx.emit("step 3/4 RUN make: exit status 2", "stderr")
        raise UnideskError.of(
            ErrorCode.BUILD_FAILED, f"{ctx.service.id}: docker build exited 2", service=ctx.service.id
        )
    if how in ("secret", "secret-fail"):
        token = os.environ.get("NPM_TOKEN", "")
        ctx.emit(f"using NPM_TOKEN={token} and {os.environ.get('LAB_PLAIN_SECRET', '')}")
        ctx.emit(f"cloning http://builder:{token}@git.lab/sample.git")
        if how == "secret-fail":  # the secret also reaches the step's error, hence job.json and the apply JSON
            raise UnideskError.of(
                ErrorCode.BUILD_FAILED,
                f"{ctx.service.id}: clone of http://builder:p@{token}@git.lab/sample.git with {token} failed",
                service=ctx.service.id,
            )
    if how == "session":
        await ctx.session()
    if how == "lost":  # the SSH connection drops mid-step
        import asyncssh

        raise asyncssh.ConnectionLost("Connection lost")
    if how == "import-planted":  # what a late import in the worker would find: only a planted module has this name
        try:
            importlib.import_module(PLANTED_MODULE)
            ctx.emit(f"{PLANTED_MODULE} imported")
        except ImportError:
            ctx.emit(f"{PLANTED_MODULE} not importable")
    if how == "sleep":
        (runtime() / f"{ctx.service.id}.building").write_text(str(os.getpid()))
        await asyncio.sleep(600)
    if how == "hold":
        interval("start", ctx.service.id)
        await asyncio.sleep(float(behaviour().get("holdSeconds", 0.5)))
        interval("end", ctx.service.id)
    await pace()
    (runtime() / f"{ctx.service.id}.image").write_text(ctx.service.commit)


def interval(edge: str, service: str) -> None:
    line = json.dumps({"edge": edge, "service": service, "pid": os.getpid(), "t": time.time()}) + "\n"
    fd = os.open(runtime() / "intervals.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def overlaps(rt: Path, alive_until: float) -> list[tuple[int, int]]:
    """Pairs of worker pids whose builds of one service overlapped (an unfinished build lasts to
    `alive_until`, e.g. the moment its worker was seen dead)."""
    spans: dict[tuple[str, int], list[float]] = {}
    path = rt / "intervals.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line)
        span = spans.setdefault((rec["service"], rec["pid"]), [rec["t"], alive_until])
        if rec["edge"] == "end":
            span[1] = rec["t"]
    out = []
    items = sorted(spans.items(), key=lambda kv: kv[1][0])
    for i, ((service, pid), (_start, end)) in enumerate(items):
        for (other_service, other_pid), (other_start, _) in items[i + 1 :]:
            if other_service == service and other_start < end:
                out.append((pid, other_pid))
    return out


async def rollout(ctx) -> None:
    ctx.emit(f"recreating {ctx.service.id}")
    await pace()
    if behaviour().get("rollout") != "stale":
        (runtime() / f"{ctx.service.id}.commit").write_text(ctx.service.commit)


async def verify(ctx) -> None:
    live = running_commit(ctx.service.id)
    ctx.emit(f"health reports {live or 'nothing'}")
    await pace()
    if live != ctx.service.commit:
        raise UnideskError.of(
            ErrorCode.VERIFICATION_FAILED,
            f"{ctx.service.id}: runs {live}, requested {ctx.service.commit}",
            service=ctx.service.id,
        )


class FileWorkload(Executor):
    target_lock = False  # it acts on files in the runtime dir, never on a target host

    async def probe(self, session, catalog, service) -> Observation:
        return observe(service)

    def steps(self, service) -> list[Step]:
        return [
            Step("inspect", inspect, read_only=True),
            Step("build", build, limit="build"),
            Step("rollout", rollout, limit="rollout", restores=True),
            Step("verify", verify, limit="verify", restores=True),
        ]

    def restore_steps(self, service) -> list[Step]:
        return [Step("restore", restore), Step("restore-verify", verify)]


def observe(service) -> Observation:
    live = running_commit(service.id)
    if live is None:
        return Observation(LiveState(state="missing"))
    state = "in-sync" if live == service.commit else "drift"
    return Observation(LiveState(commit=live, state=state, health="healthy"))


def read_live(catalog, desired) -> dict[str, Observation]:
    """The LiveReader for this workload (reads the runtime dir, no target connection)."""
    return {d.id: observe(d) for d in desired}


def worker_boot(directory: Path) -> Path:
    """A directory whose sitecustomize.py loads this workload into every Python started with it
    on PYTHONPATH (the detached worker)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(f"import {__name__}\n{__name__}.install()\n")
    return directory


def install() -> None:
    """Map every mode to the workload in the registry (one line per mode, as for a real executor)."""
    for mode in MODES:
        registry.EXECUTORS[mode] = f"{__name__}:FileWorkload"
