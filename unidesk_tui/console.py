"""`unidesk` with no subcommand: open the console (cli.py calls `run_console(args)`)."""

from __future__ import annotations

import argparse
import sys

from unidesk_tui.model import environment
from unidesk_tui.workspace import Workspace


def run_console(args: argparse.Namespace) -> int:
    """Run the console until the operator quits; say on stderr which jobs keep running."""
    from unidesk_tui.app import UnideskApp, follow_hint, refresh_interval_from_env

    if not sys.stdout.isatty() or not sys.stdin.isatty():
        from unidesk_tui.errors import UsageError

        # Without a terminal this is a script: answer like every other command (a JSON error).
        raise UsageError(
            "unidesk: the console needs a terminal; for scripts use `unidesk --json check` or `unidesk deploy ...`"
        )
    ws = Workspace.at(getattr(args, "workspace", None), getattr(args, "state_dir", None))
    ws.ensure_state_dir()
    env = environment(getattr(args, "console_env", None))
    refresh = getattr(args, "refresh", None) or refresh_interval_from_env()
    app = UnideskApp(ws, environment=env, refresh_interval=refresh)
    code = app.run()
    for job in app.active_jobs():
        sys.stderr.write(f"job {job.id} is still {job.status} and continues; follow it: {follow_hint(job.id)}\n")
    return int(code or 0)
