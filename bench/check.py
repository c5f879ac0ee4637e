"""Benchmark: `deploy check` over 1 vs 60 services, and 60 services vs a sequential ssh loop (root, Linux).

    python bench/check.py [--rounds 3] [--dir /tmp/udlab-bench-check] [--keep]

Brings up its own seeded lab, runs one compose container per host (D601 gets the sample image
copied over from D518), and adds 60 catalog entries spread over the three hosts, each naming one
of those real containers and its real health port, so every probe does the full work: SSH,
Docker API over the tunnel, image labels, env, image presence and health through the microservice
proxy. Prints figures and the two ratios; asserts nothing.

- scale = t(check, 60 services) / t(check, 1 service)          goal <= 1.5
- speedup = t(sequential `ssh host docker inspect …` x 60) / t(check, 60)   goal >= 10
Both are given for the whole CLI process and for the in-process live read (`read_live`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unidesk_lab import lab  # noqa: E402
from unidesk_lab.layout import Layout  # noqa: E402

HOSTS = ("main-server", "D601", "D518")
D601_PORT = 18090


def sh(argv: list[str], input: bytes | None = None) -> bytes:
    return subprocess.run(argv, input=input, capture_output=True, check=True).stdout


def ssh(cfg: Path, host: str, *argv: str) -> bytes:
    import shlex

    return sh(["ssh", "-F", str(cfg), host, shlex.join(argv)])


def prepare(lay: Layout, content: dict) -> tuple[Path, Path, Path, list[tuple[str, str]]]:
    """Workspace config with 60 bench services; manifests for 1 and 60; (host, container) per service."""
    cfg_path = lay.workspace / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["microservices"] = [m for m in cfg["microservices"] if not m["id"].startswith("bench-")]
    by_id = {m["id"]: m for m in cfg["microservices"]}
    ssh_cfg = lay.ssh_config
    old, repo = content["old"], content["sampleRepo"]
    # D601 has no compose service in the lab: run one, from the image D518 built (docker save/load).
    d518_image = by_id["d518-worker"]["build"]["image"]
    ssh(ssh_cfg, "D601", "docker", "rm", "-f", "bench-d601") if b"bench-d601" in ssh(
        ssh_cfg, "D601", "docker", "ps", "-a", "--format", "{{.Names}}"
    ) else None
    sh(
        ["ssh", "-F", str(ssh_cfg), "D601", "docker load"],
        input=sh(["ssh", "-F", str(ssh_cfg), "D518", f"docker save {d518_image}"]),
    )
    env = {
        "PORT": str(D601_PORT),
        "UNIDESK_DEPLOY_SERVICE_ID": "bench-d601",
        "UNIDESK_DEPLOY_REPO": repo,
        "UNIDESK_DEPLOY_COMMIT": old,
        "UNIDESK_DEPLOY_REQUESTED_COMMIT": old,
    }
    run = [
        "docker",
        "run",
        "-d",
        "--name",
        "bench-d601",
        "--init",
        "--network",
        "host",
        "--label",
        "com.docker.compose.project=bench",
        "--label",
        "com.docker.compose.service=bench-d601",
    ]
    for k, v in env.items():
        run += ["-e", f"{k}={v}"]
    ssh(ssh_cfg, "D601", *run, d518_image)
    # Real containers to point at: (host, compose project, compose service, health port, mode).
    anchors = [
        ("main-server", "unidesk", "backend-core", by_id["backend-core"]["health"]["port"], "unidesk-direct"),
        ("main-server", "unidesk", "code-queue-mgr", by_id["code-queue-mgr"]["health"]["port"], "internal-sidecar"),
        ("D518", "unidesk", "d518-worker", by_id["d518-worker"]["health"]["port"], "unidesk-direct"),
        ("D601", "bench", "bench-d601", D601_PORT, "unidesk-direct"),
    ]
    per_host = {h: [a for a in anchors if a[0] == h] for h in HOSTS}
    names = {}
    for host, project, service, _, _ in anchors:
        out = (
            ssh(
                ssh_cfg,
                host,
                "docker",
                "ps",
                "-q",
                "--filter",
                f"label=com.docker.compose.project={project}",
                "--filter",
                f"label=com.docker.compose.service={service}",
            )
            .decode()
            .split()
        )
        names[(host, service)] = out[0]
    bench, targets = [], []
    for i in range(60):
        host = HOSTS[i % 3]
        h, project, service, port, mode = per_host[host][(i // 3) % len(per_host[host])]
        sid = f"bench-{i:02d}"
        bench.append(
            {
                "id": sid,
                "repository": {"url": repo},
                "deployment": {"mode": mode, "target": host},
                "build": {"image": f"unidesk-{sid}:bench"},
                "health": {"path": "/cgi-bin/health", "port": port, "exposesDeployCommit": True},
                "compose": {"project": project, "service": service},
            }
        )
        targets.append((host, names[(host, service)]))
    cfg["microservices"] += bench
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")  # the bench lab's own workspace: msproxy reads it
    one, sixty = lay.dir / "bench-one.json", lay.dir / "bench-sixty.json"
    for path, services in ((one, bench[:1]), (sixty, bench)):
        path.write_text(
            json.dumps(
                {"schemaVersion": 1, "services": [{"id": s["id"], "repo": repo, "commitId": old} for s in services]}
            )
        )
    return one, sixty, ssh_cfg, targets


def cli_check(lay: Layout, manifest: Path, state: Path) -> tuple[float, dict]:
    start = time.perf_counter()
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
            "check",
            "--file",
            str(manifest),
        ],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    return elapsed, json.loads(proc.stdout)


def live_read(lay: Layout, manifest: Path, state: Path) -> float:
    """Only the live read of `deploy check` (commit resolution and process start excluded)."""
    from unidesk_tui.catalog import load_catalog
    from unidesk_tui.live import read_live
    from unidesk_tui.model import DesiredService

    catalog = load_catalog(lay.workspace / "config.json")
    doc = json.loads(manifest.read_text())
    desired = []
    for entry in doc["services"]:
        ms = catalog.microservice(entry["id"])
        desired.append(
            DesiredService(
                ms.id,
                entry["repo"],
                entry["commitId"],
                ms,
                ms.deployment.mode,
                ms.deployment.target,
                ms.k8s,
                entry["commitId"],
            )
        )
    start = time.perf_counter()
    obs = read_live(catalog, desired)
    elapsed = time.perf_counter() - start
    assert len(obs) == len(desired)
    return elapsed


def sequential_loop(ssh_cfg: Path, targets: list[tuple[str, str]]) -> float:
    start = time.perf_counter()
    for host, container in targets:
        ssh(ssh_cfg, host, "docker", "inspect", container)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", type=Path, default=Path("/tmp/udlab-bench-check"))
    p.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    p.add_argument("--reuse", action="store_true", help="use the lab already up in --dir (from an earlier --keep)")
    args = p.parse_args()
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        print("bench/check.py needs root on Linux", file=sys.stderr)
        return 2
    if not (args.reuse and lab.status(args.dir)["up"]):
        lab.down(args.dir)
        shutil.rmtree(args.dir, ignore_errors=True)
    try:
        if not lab.status(args.dir)["up"]:
            lab.up(args.dir, seed=True)
        lay = Layout.load(args.dir.resolve())
        content = json.loads((lay.dir / "content.json").read_text())
        one, sixty, ssh_cfg, targets = prepare(lay, content)
        state = lay.dir / "bench-state"
        _, doc = cli_check(lay, sixty, state)  # warm the commit mirror cache
        states = {}
        for s in doc["services"]:
            states[s["live"]["state"] if s.get("live") else s["action"]] = (
                states.get(s["live"]["state"] if s.get("live") else s["action"], 0) + 1
            )
        print(f"60-service check: live states {states}, errors {[e['code'] for e in doc['errors']]}")
        t1 = statistics.median(cli_check(lay, one, state)[0] for _ in range(args.rounds))
        t60 = statistics.median(cli_check(lay, sixty, state)[0] for _ in range(args.rounds))
        r1 = statistics.median(live_read(lay, one, state) for _ in range(args.rounds))
        r60 = statistics.median(live_read(lay, sixty, state) for _ in range(args.rounds))
        seq = statistics.median(sequential_loop(ssh_cfg, targets) for _ in range(args.rounds))
        print(f"deploy check (CLI process), median of {args.rounds}: 1 service {t1:.3f} s, 60 services {t60:.3f} s")
        print(f"live read only (in-process):      1 service {r1:.3f} s, 60 services {r60:.3f} s")
        print(f"sequential `ssh host docker inspect` x 60: {seq:.3f} s")
        print(f"scale   t60/t1  CLI {t60 / t1:.2f}x   live read {r60 / r1:.2f}x   (goal <= 1.5)")
        print(f"speedup seq/t60 CLI {seq / t60:.1f}x   live read {seq / r60:.1f}x   (goal >= 10)")
    finally:
        if not args.keep:
            lab.down(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
