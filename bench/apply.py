"""`deploy apply` cold build vs forced rebuild of the same commit, and an instant rollback (B over
A, then A again: no fetch, no build), in a lab of its own.

Goal: the forced rebuild's build step takes <= 0.2x the cold one. Cold = the target's image and
BuildKit cache removed first. Two commits: the lab's sample service as it is (a build of ~1 s,
mostly fixed per-build overhead) and the same service with a few seconds of real build work (a
RUN step hashing 512 MiB, standing in for a compile), pushed to a bench branch. Needs root on Linux (the lab); the lab lives in
$UNIDESK_BENCH_LAB_DIR (default /tmp/unidesk-lab-bench) and is torn down at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from unidesk_lab import lab as labapi  # noqa: E402
from unidesk_lab import sample  # noqa: E402
from unidesk_lab.layout import Layout  # noqa: E402

SERVICE = "backend-core"
HOST = "main-server"


def ssh(lay: Layout, argv: list[str]) -> str:
    return subprocess.run(
        ["ssh", "-F", str(lay.ssh_config), HOST, shlex.join(argv)], check=True, capture_output=True, text=True
    ).stdout


def apply(lay: Layout, state: Path, manifest: Path, *extra: str) -> dict:
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "unidesk_tui.cli",
            "--workspace",
            str(lay.workspace),
            "--state-dir",
            str(state),
            "deploy",
            "apply",
            "--file",
            str(manifest),
            "--wait",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
    )
    doc = json.loads(proc.stdout)
    if doc.get("status") != "succeeded":
        raise SystemExit(f"apply failed: {json.dumps(doc)[:3000]}")
    doc["wall"] = time.perf_counter() - started
    return doc


GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@b",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}
WORK_STEP = (
    'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox dd if=/dev/zero bs=1048576 count=512 2>/dev/null | '
    '/bin/busybox sha256sum > /app/digest"]\n'
)


def push_variant(lay: Layout, base: str, tmp: Path, branch: str, edit: Callable[[Path], None], message: str) -> str:
    """A clone of the lab's sample service at `base`, changed by `edit(clone)`, committed and pushed
    to refs/heads/`branch`; returns the new commit."""
    clone = tmp / "sample"

    def git(*a):
        return subprocess.run(
            ["git", "-C", str(clone), *a], check=True, capture_output=True, text=True, env=GIT_ENV
        ).stdout.strip()  # noqa: E731

    subprocess.run(
        ["git", "clone", "-q", str(lay.git_root / "sample-service.git"), str(clone)], check=True, env=GIT_ENV
    )
    git("checkout", "-q", "-B", branch, base)
    edit(clone)
    git("commit", "-q", "-am", message)
    git("push", "-q", "--force", "origin", f"HEAD:refs/heads/{branch}")
    return git("rev-parse", "HEAD")


def work_commit(lay: Layout, base: str, tmp: Path) -> str:
    """`base` plus a RUN step doing a few seconds of work, pushed to refs/heads/bench-apply-work."""

    def add_work(clone: Path) -> None:
        dockerfile = clone / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + WORK_STEP)

    return push_variant(lay, base, tmp, "bench-apply-work", add_work, "bench: a build with real work")


def cold_vs_forced(lay: Layout, tmp: Path, name: str, repo: str, commit: str, image: str) -> tuple[dict, dict]:
    state, manifest = tmp / f"state-{name}", tmp / f"{name}.json"
    manifest.write_text(
        json.dumps({"schemaVersion": 1, "services": [{"id": SERVICE, "repo": repo, "commitId": commit}]})
    )
    ssh(lay, ["docker", "image", "rm", "-f", image])
    ssh(lay, ["docker", "builder", "prune", "-af"])
    cold = apply(lay, state, manifest)
    forced = apply(lay, state, manifest, "--force")
    if os.environ.get("BENCH_VERBOSE"):
        from unidesk_tui import jobs

        for doc in (cold, forced):
            for e in jobs.read_events(state, doc["jobId"])[0]:
                if e.step == "build":
                    print(e.ts[11:], e.stream, e.text[:160])
    return cold, forced


BUILD_PHASE = ("reuse", "source", "build")


def phase_ms(doc: dict, names: tuple[str, ...] = BUILD_PHASE) -> int:
    """Time spent deciding, fetching and building (skipped steps count 0)."""
    return sum(s["durationMs"] or 0 for s in doc["job"]["steps"] if s["service"] == SERVICE and s["name"] in names)


def rollback(lay: Layout, tmp: Path, repo: str, a: str, b: str, image: str) -> tuple[dict, dict]:
    """Cold apply of A (image, build cache and A's provenance record removed), B over it, then A again."""
    state = tmp / "state-rollback"
    manifests = {}
    for commit in (a, b):
        manifests[commit] = tmp / f"rollback-{commit[:8]}.json"
        manifests[commit].write_text(
            json.dumps({"schemaVersion": 1, "services": [{"id": SERVICE, "repo": repo, "commitId": commit}]})
        )
    work_dir = next(
        t["workDir"] for t in json.loads((lay.workspace / "config.json").read_text())["targets"] if t["id"] == HOST
    )
    ssh(lay, ["rm", "-rf", "--", f"{work_dir}/provenance/{SERVICE}"])
    ssh(
        lay,
        [
            "sh",
            "-c",
            f"docker image ls --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | grep -F -- "
            f"{shlex.quote(image.split(':')[0])} | xargs -r docker image rm -f",
        ],
    )
    ssh(lay, ["docker", "builder", "prune", "-af"])
    cold = apply(lay, state, manifests[a], "--force")
    apply(lay, state, manifests[b])
    back = apply(lay, state, manifests[a])
    return cold, back


def build_ms(doc: dict) -> int:
    return next(s["durationMs"] for s in doc["job"]["steps"] if s["service"] == SERVICE and s["name"] == "build")


def main() -> None:
    path = Path(os.environ.get("UNIDESK_BENCH_LAB_DIR") or "/tmp/unidesk-lab-bench")
    labapi.down(path)
    labapi.up(path, seed=True)
    try:
        lay = Layout.load(path.resolve())
        content = sample.content(lay)
        image = content["services"][SERVICE]["image"]
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            repo = content["sampleRepo"]
            results["sample service"] = cold_vs_forced(lay, tmp, "sample", repo, content["new"], image)
            work = work_commit(lay, content["new"], tmp)
            results["sample + 512 MiB hash step"] = cold_vs_forced(lay, tmp, "work", repo, work, image)
            back = rollback(lay, tmp, repo, work, content["old"], image)
    finally:
        labapi.down(path)
    for name, (cold, forced) in results.items():
        c, f = build_ms(cold), build_ms(forced)
        print(
            f"{SERVICE} on {HOST}, {name}: build step cold {c} ms (job {cold['wall']:.1f} s), forced rebuild of the "
            f"same commit {f} ms "
            f"(job {forced['wall']:.1f} s); ratio {f / c:.3f} (goal <= 0.2)"
        )
    cold, again = back
    c, r = phase_ms(cold), phase_ms(again)
    built = {s["name"]: s["status"] for s in again["job"]["steps"]}["build"]
    print(
        f"{SERVICE} on {HOST}, rollback B over A then A (A = sample + 512 MiB hash step): build phase "
        "(reuse+source+build) "
        f"cold A {c} ms (job {cold['wall']:.1f} s), A again {r} ms (job {again['wall']:.1f} s, build step {built}); "
        f"ratio {r / c:.3f} (goal <= 0.2)"
    )


if __name__ == "__main__":
    main()
