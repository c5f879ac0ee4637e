"""The `unidesk` command line. Its JSON documents and exit codes are an API (docs/cli.md).

stdout carries exactly one JSON document per command; diagnostics go to stderr; no traceback
reaches the user (set UNIDESK_DEBUG=1 to see one on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from unidesk_tui.enums import NAMED_ENVIRONMENTS
from unidesk_tui.errors import ErrorCode, ExitCode, UnideskError, UsageError
from unidesk_tui.workspace import Workspace

if TYPE_CHECKING:
    from unidesk_tui.documents import ErrorDocument

# Start-up time is part of the interface (`job status` is polled by scripts; bench/startup.py):
# `job status`, `job list` and `--help` never load pydantic, asyncssh, git, yaml or the catalog
# (tests/test_startup.py). Modules that do are imported by the commands that need them, not here.


class _Help(Exception):
    def __init__(self, prog: str, usage: str) -> None:
        super().__init__(prog)
        self.prog, self.usage = prog, usage


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage to stdout and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")

    def print_help(self, file=None) -> None:  # -h: a JSON usage document, like every command's output
        raise _Help(self.prog, self.format_help())


def emit(doc: dict | object) -> None:
    text = doc.model_dump_json() if hasattr(doc, "model_dump_json") else json.dumps(doc)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _service_id(value: str) -> str:
    from unidesk_tui.identifiers import is_service_id

    if not is_service_id(value):
        raise argparse.ArgumentTypeError(f"invalid service id {value!r}")
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0.5 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"refresh interval must be 0.5..3600 seconds, got {value!r}")
    return seconds


def _option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each dest of the parser and its subparsers, as the user types it (--file, JOB_ID)."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                names = {**_option_names(subparser), **names}
        else:
            metavar = action.metavar if isinstance(action.metavar, str) else action.dest
            names.setdefault(action.dest, action.option_strings[0] if action.option_strings else metavar)
    return names


def refuse_non_utf8(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A byte that is not UTF-8 in an argument (a path, most often) reaches Python as a lone
    surrogate (PEP 383) and cannot go into a JSON document: refused as `usage`, naming the option,
    before anything runs."""
    for dest, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str):
                continue
            try:
                item.encode()
            except UnicodeEncodeError:
                option = _option_names(parser).get(dest, dest)
                raise UsageError(f"unidesk: {option}: {_as_bytes(item)} is not valid UTF-8") from None


def _as_bytes(text: str) -> str:
    """The argument's bytes as typed, escaped: b'/tmp/\\xff.json'."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no command line yields (main(argv) from Python)
        raw = text.encode("utf-8", "backslashreplace")
    return repr(raw)


def _add_source_args(p: argparse.ArgumentParser, envs: Sequence[str] = NAMED_ENVIRONMENTS) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--file", help="manifest file (default: <workspace>/deploy.json)")
    group.add_argument("--env", choices=[str(e) for e in envs], help="read deploy.json from origin/deploy/<env>")
    p.add_argument("--service", action="append", type=_service_id, metavar="ID", help="only this service (repeatable)")


def _plan_command(name: Literal["check", "plan"]) -> Callable[[argparse.Namespace, Workspace], int]:
    def run(args: argparse.Namespace, ws: Workspace) -> int:
        from unidesk_tui.live import read_live as live_reader
        from unidesk_tui.planning import exit_code, run_plan

        read_live = live_reader if not args.env or args.live else None  # an environment's runtime only with --live
        force = getattr(args, "force", False)
        result = run_plan(
            ws, name, file=args.file, env=args.env, services=args.service, force=force, read_live=read_live
        )
        doc = result.document
        if getattr(args, "out", None):
            doc = _save_plan(ws, result, args, force)
        emit(doc)
        return exit_code(doc)

    return run


def _save_plan(ws: Workspace, result, args: argparse.Namespace, force: bool):
    """`deploy plan --out FILE`: bind the plan to its facts and save it for `deploy apply --plan`."""
    from unidesk_tui import plan_binding
    from unidesk_tui.documents import ErrorItem, PlanRequest

    doc = result.document
    request = PlanRequest(
        file=str(Path(args.file).resolve()) if args.file else None, env=args.env, services=args.service, force=force
    )
    try:
        saved = plan_binding.bind(doc, result.catalog, request, ws.root)
        plan_binding.write(Path(args.out), saved)
    except UnideskError as exc:
        return doc.model_copy(
            update={"ok": False, "errors": [*doc.errors, *(ErrorItem(**p.to_dict()) for p in exc.problems)]}
        )
    except OSError as exc:
        error = ErrorItem(code=ErrorCode.PLAN_INVALID, message=f"cannot write the plan file {args.out}: {exc.strerror}")
        return doc.model_copy(update={"ok": False, "errors": [*doc.errors, error]})
    return doc.model_copy(update={"planFile": str(Path(args.out).resolve()), "digest": saved.digest})


# Each registrar adds its subcommands and sets `handler` on them. Other areas (lab, jobs, apply,
# console) register here so that this module stays the one entry point.
REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = []


def _register_deploy(sub: argparse._SubParsersAction) -> None:
    deploy = sub.add_parser("deploy", help="check, plan and apply desired state")
    dsub = deploy.add_subparsers(dest="deploy_command", required=True, parser_class=_Parser)
    commands: tuple[tuple[Literal["check", "plan"], str], ...] = (
        ("check", "compare desired and live state (read-only)"),
        ("plan", "live state plus the intended action"),
    )
    for name, text in commands:
        for parent, cmd in ((dsub, name), (sub, name)):
            p = parent.add_parser(cmd, help=text)
            _add_source_args(p)
            p.add_argument(
                "--live",
                action="store_true",
                help="with --env: read the environment's runtime (its namespace on its target, health through "
                "its own proxy), read-only; file mode always reads it",
            )
            if name == "plan":
                p.add_argument("--force", action="store_true", help="plan deploy even where the live commit matches")
                p.add_argument(
                    "--out",
                    metavar="FILE",
                    help="save the plan, bound to the desired and live state it rests on, for deploy apply --plan",
                )
            p.set_defaults(handler=_plan_command(name), command_name=name)


REGISTRARS.append(_register_deploy)


# Modules that add their own subcommands. They always ship: a failing import is an error, not a
# missing feature. The lab is its own package; only `unidesk lab` reaches it, by name.
REGISTRAR_MODULES = ("unidesk_lab.cli", "unidesk_tui.jobs_cli", "unidesk_tui.devenv")
# The top-level word each module serves: a command line naming one loads only that module
# (`deploy apply` is the jobs module's). Anything else (--help, no command) loads them all.
COMMAND_MODULES = {
    "lab": ("unidesk_lab.cli",),
    "job": ("unidesk_tui.jobs_cli",),
    "deploy": ("unidesk_tui.jobs_cli",),
    "dev-env": ("unidesk_tui.devenv",),
    "check": (),
    "plan": (),
}
# Options of the top-level parser that take a value (their value is not the command word).
_VALUED = ("--workspace", "--state-dir", "--env", "--refresh")


def command_word(argv: Sequence[str]) -> str | None:
    """The subcommand a command line names (None: none, or help before it)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif arg in ("-h", "--help"):
            return None
        elif not arg.startswith("-"):
            return arg
    return None


def _module_registrars(argv: Sequence[str] | None = None) -> None:
    word = command_word(argv) if argv is not None else None
    for module in COMMAND_MODULES.get(word or "", REGISTRAR_MODULES):
        add_parser = importlib.import_module(module).add_parser
        if add_parser not in REGISTRARS:
            REGISTRARS.append(add_parser)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the command line, with only the subcommands it can name."""
    parser = _Parser(prog="unidesk", description="Desired-state deploy reconciler for UniDesk.")
    parser.add_argument("--workspace", metavar="DIR", help="UniDesk workspace (default: current directory)")
    parser.add_argument("--state-dir", metavar="DIR", help="state directory (default: <workspace>/.state)")
    parser.add_argument("--json", action="store_true", help="headless: print JSON only (check/plan aliases)")
    console = parser.add_argument_group("console (no subcommand)")
    console.add_argument(
        "--env",
        dest="console_env",
        choices=["file", *(str(e) for e in NAMED_ENVIRONMENTS)],
        default="file",
        help="environment to open on (default: file)",
    )
    console.add_argument(
        "--refresh", type=_seconds, metavar="SECONDS", help="refresh interval (default: $UNIDESK_REFRESH_S or 5)"
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    _module_registrars(argv)
    modules = [m.__module__ for m in REGISTRARS]
    wanted = COMMAND_MODULES.get(command_word(argv) or "", REGISTRAR_MODULES) if argv is not None else REGISTRAR_MODULES
    for register, module in zip(REGISTRARS, modules, strict=False):
        if module == __name__ or module in wanted:
            register(sub)
    return parser


def configure_logging() -> None:
    """Diagnostics on stderr, at $UNIDESK_LOG_LEVEL (default WARNING). Commands that set
    `logs_nothing` (job status, job list: polled, fast) skip it and the logging import, and call
    it before they turn to modules that log."""
    import logging

    logging.basicConfig(
        level=os.environ.get("UNIDESK_LOG_LEVEL", "WARNING"),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    # We use no pydantic plugins; looking for them scans every installed distribution's entry
    # points the first time a model is built, which costs more than `job status` itself.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "unidesk"
    try:
        parser = build_parser(argv)
        try:
            args = parser.parse_args(argv)
        except _Help as usage:
            from unidesk_tui.job_files import help_text  # HelpDocument, printed without pydantic

            sys.stdout.write(help_text(usage.prog, usage.usage) + "\n")
            sys.stdout.flush()
            return ExitCode.OK
        except SystemExit as exc:  # a nested parser's usage error (already on stderr)
            if not exc.code:
                return 0
            raise UsageError("unidesk: invalid command line (see --help)") from None
        command = getattr(args, "command_name", None) or args.command or "unidesk"
        refuse_non_utf8(parser, args)
        if not getattr(args, "logs_nothing", False):
            configure_logging()
        if args.command and (args.console_env != "file" or args.refresh is not None):
            # Before a subcommand these would be silently ignored, and e.g. an apply meant for
            # dev would run in file mode.
            raise UsageError(
                f"unidesk: --env/--refresh before `{args.command}` configure the console; put --env after the "
                "subcommand"
            )
        handler = getattr(args, "handler", None)
        if handler is None and getattr(args, "func", None) is not None:
            return int(args.func(args))  # registrars that need no workspace (e.g. lab)
        if handler is None:
            if args.json:
                raise UsageError("unidesk: a command is required (deploy check|plan, job, lab); see --help")
            from unidesk_tui.console import run_console

            return run_console(args)
        ws = Workspace.at(args.workspace, args.state_dir)
        ws.ensure_state_dir()
        return int(handler(args, ws))
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        emit(_error_document(command, ErrorCode.USAGE, str(exc)))
        return ExitCode.USAGE
    except UnideskError as exc:
        from unidesk_tui.documents import ErrorDocument, to_errors

        emit(ErrorDocument(command=command, errors=to_errors(exc.problems)))
        return ExitCode.ERROR
    except KeyboardInterrupt as exc:  # before any job started (signals.py); SIGINT, SIGHUP or SIGTERM
        signum = getattr(exc, "signum", 2)
        emit(_error_document(command, ErrorCode.INTERRUPTED, f"interrupted ({exc or 'SIGINT'})"))
        return 128 + signum
    except Exception as exc:  # last resort: a coded error, never a traceback
        if os.environ.get("UNIDESK_DEBUG"):
            import traceback

            traceback.print_exc()
        emit(_error_document(command, ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"))
        return ExitCode.ERROR


def _error_document(command: str, code: ErrorCode, message: str) -> ErrorDocument:
    from unidesk_tui.documents import ErrorDocument, ErrorItem

    return ErrorDocument(command=command, errors=[ErrorItem(code=code, message=message)])


if __name__ == "__main__":
    sys.exit(main())
