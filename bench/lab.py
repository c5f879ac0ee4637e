"""Benchmark: how long `lab up`, an idempotent `lab up`, seeding and `lab down` take (root, Linux).

    python bench/lab.py [--rounds 3] [--dir /tmp/udlab-bench]

Uses its own lab directory (removed first), so it never touches a lab in use. Prints figures only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unidesk_lab import lab  # noqa: E402
from unidesk_lab.layout import Layout  # noqa: E402
from unidesk_lab.seed import run as seed  # noqa: E402


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", type=Path, default=Path("/tmp/udlab-bench"))
    args = p.parse_args()
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        print("bench/lab.py needs root on Linux", file=sys.stderr)
        return 2
    lab.down(args.dir)
    shutil.rmtree(args.dir, ignore_errors=True)
    figures: dict[str, list[float]] = {
        "up (first: keys, sample repos)": [],
        "up (again, after down)": [],
        "up (lab already running)": [],
        "seed (3 builds + compose up)": [],
        "down": [],
    }
    try:
        for i in range(args.rounds):
            key = "up (first: keys, sample repos)" if i == 0 else "up (again, after down)"
            figures[key].append(timed(lab.up, args.dir))
            figures["up (lab already running)"].append(timed(lab.up, args.dir))
            if i == 0:
                figures["seed (3 builds + compose up)"].append(timed(seed, Layout.load(args.dir.resolve())))
            figures["down"].append(timed(lab.down, args.dir))
    finally:
        lab.down(args.dir)
    print(f"lab bench: {args.rounds} rounds in {args.dir} ({os.cpu_count()} CPUs)")
    for name, values in figures.items():
        if values:
            print(
                f"  {name:34s} median {statistics.median(values):6.2f} s   min {min(values):6.2f} s   max "
                f"{max(values):6.2f} s   n={len(values)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
