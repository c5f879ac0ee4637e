"""`unidesk lab up|down|status [--dir DIR]`: each prints exactly one JSON document on stdout.

Success documents are the lab API's results with `"ok": true` added; any failure prints
`{"ok": false, "errors": [{"code": "lab_failed", "message": ...}]}` and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys

LAB_FAILED = "lab_failed"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `lab` on the main parser's subparsers; the parsed args carry `func(args) -> int`."""
    lab = subparsers.add_parser(
        "lab", help="the local lab: hosts, git remote, egress proxies, k3s stand-in (root, Linux)"
    )
    sub = lab.add_subparsers(dest="lab_command", metavar="up|down|status", required=True)
    for name, text in (
        ("up", "bring the lab up (idempotent)"),
        ("down", "tear the lab down, also after a crash"),
        ("status", "report the lab's hosts and daemons"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dir", default=None, help="lab directory (default $UNIDESK_LAB_DIR or /tmp/unidesk-lab)")
        if name == "up":
            p.add_argument(
                "--seed",
                action="store_true",
                help="also deploy the sample services at an older commit than deploy.json names",
            )
        if name == "down":
            p.add_argument(
                "--purge", action="store_true", help="also delete the lab directory (image caches and runtime state)"
            )
        p.set_defaults(func=run)
    return lab


def run(args: argparse.Namespace) -> int:
    from unidesk_lab import lab

    try:
        if args.lab_command == "up":
            doc = lab.up(args.dir, seed=args.seed)
        elif args.lab_command == "down":
            doc = lab.down(args.dir, purge=args.purge)
        else:
            doc = lab.status(args.dir)
    except Exception as exc:  # every failure is one JSON document, never a traceback on stdout
        import logging  # here: `unidesk --help` loads this module and starts without logging

        logging.getLogger(__name__).debug("lab %s failed", args.lab_command, exc_info=True)
        print(
            json.dumps(
                {"ok": False, "errors": [{"code": LAB_FAILED, "message": str(exc) or type(exc).__name__}]}, indent=2
            )
        )
        return 1
    print(json.dumps({"ok": True, **doc}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unidesk")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
