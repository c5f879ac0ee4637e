"""The target-side source step's mirror and contexts, on real git, flock and sh (issue 13).

The step's remote commands run here through a local stand-in for the SSH session that executes
exactly the command line a target would (targets.command_line), so the healing script, the
flock and the context pruning are the real ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path

from executors.source import mirror_path, source_step
from unidesk_tui.catalog import Target
from unidesk_tui.targets import RunResult, command_line


class LocalSession:
    async def run(self, argv, *, env=None, timeout=None, on_line=None, input=None):
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", command_line(argv, env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        for stream, data in (("stdout", out), ("stderr", err)):
            for line in data.decode().splitlines():
                if on_line is not None:
                    on_line(line, stream)
        return RunResult(tuple(argv), proc.returncode, out.decode(), err.decode())


class Ctx:
    def __init__(self, world, work_dir: Path, environment: str | None = None) -> None:
        from tests.test_executors_unit import svc

        self.service = dataclasses.replace(
            svc(), repo=world.service_url, commit=world.pushed[1], environment=environment
        )
        self.target = Target.model_validate(
            {"id": "main-server", "role": "main", "ssh": {"host": "10.0.0.4"}, "workDir": str(work_dir)}
        )
        self.shared: dict = {}
        self.lines: list[str] = []

    def emit(self, text: str, stream: str = "stdout") -> None:
        self.lines.append(text)

    async def session(self):
        return LocalSession()


async def test_a_killed_gits_lock_files_are_removed_and_the_fetch_succeeds(git_world, tmp_path):
    await source_step(Ctx(git_world, tmp_path))
    mirror = Path(mirror_path(str(tmp_path), git_world.service_url))
    litter = [mirror / "refs" / "heads" / "master.lock", mirror / "packed-refs.lock", mirror / "shallow.lock"]
    for path in litter:
        path.write_text("x")
    ctx = Ctx(git_world, tmp_path)
    await source_step(ctx)
    assert not any(p.exists() for p in litter)
    assert sorted(line for line in ctx.lines if "stale_lock_removed" in line) == sorted(
        f"target_source_stale_lock_removed={p}" for p in litter
    )


async def test_a_corrupt_target_mirror_is_rebuilt(git_world, tmp_path):
    await source_step(Ctx(git_world, tmp_path))
    mirror = Path(mirror_path(str(tmp_path), git_world.service_url))
    for obj in (mirror / "objects").rglob("*"):
        if obj.is_file() and obj.parent.name != "info":
            obj.write_bytes(b"garbage")
    ctx = Ctx(git_world, tmp_path)
    await source_step(ctx)
    assert any("target_source_mirror_rebuilt" in line for line in ctx.lines)
    assert ctx.shared["context"] and (Path(ctx.shared["context"]) / "Dockerfile").exists()


async def test_contexts_of_dead_jobs_are_removed_by_liveness_not_age(git_world, tmp_path):
    contexts = tmp_path / "contexts"
    dead = contexts / "file--backend-core-0123456789ab-dead0001"  # a killed job's, a minute old
    other_env = contexts / "dev--backend-core-0123456789ab-live0001"  # another environment's job may be running
    legacy_young = contexts / "backend-core-0123456789ab-old00001"  # unnamed environment: age still decides
    legacy_old = contexts / "backend-core-0123456789ab-old00002"
    other_service = contexts / "file--backend-core-x-0123456789ab-dead0003"  # backend-core-x's: its own lock
    dead_archive = contexts / "file--backend-core-0123456789ab-dead0004.tar"  # killed before unpacking
    dead_archive.parent.mkdir(parents=True, exist_ok=True)
    dead_archive.write_bytes(b"")
    for path in (dead, other_env, legacy_young, legacy_old, other_service):
        path.mkdir(parents=True)
        (path / "Dockerfile").write_text("FROM scratch\n")
    old = time.time() - 3 * 3600
    os.utime(legacy_old, (old, old))
    ctx = Ctx(git_world, tmp_path)
    await source_step(ctx)
    assert not dead.exists() and not legacy_old.exists() and not dead_archive.exists()
    assert other_env.exists() and legacy_young.exists() and other_service.exists()
    assert Path(ctx.shared["context"]).name.startswith("file--backend-core-")
    assert f"target_build_context_pruned={dead}" in ctx.lines
