"""The console in a real terminal: tmux runs `unidesk`, keys are sent as a terminal sends them.

Pilot injects key events past the terminal driver; these tests catch what only a real terminal
shows (a binding swallowed before the app sees it, an exit that waits on threads).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.console.conftest import ConsoleWorld
from tests.console.helpers import silent_main_server

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
REPO = Path(__file__).resolve().parents[2]


class Tmux:
    """One private tmux server with one pane running the console."""

    def __init__(self, socket_name: str) -> None:
        self.socket = socket_name

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True)

    def start(self, command: list[str], env: dict[str, str], size: tuple[int, int]) -> None:
        line = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shlex.join(command)
        self.run(
            "-f", "/dev/null", "new-session", "-d", "-s", "c", "-x", str(size[0]), "-y", str(size[1]), f"env {line}"
        )
        self.run("set-option", "-t", "c", "remain-on-exit", "on")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "c").stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "c", *keys)

    def dead(self) -> bool:
        return self.run("display-message", "-p", "-t", "c", "#{pane_dead}").stdout.strip() == "1"

    def wait_text(self, text: str, timeout: float = 30.0) -> str:
        return wait_for(lambda: (s := self.screen()) and text in s and s, f"{text!r} on the terminal", timeout, 0.1)

    def kill(self) -> None:
        self.run("kill-server")


@pytest.fixture
def tmux(world: ConsoleWorld) -> Iterator[Tmux]:
    t = Tmux(f"unidesk-console-{os.getpid()}-{time.monotonic_ns()}")
    yield t
    t.kill()


def console_env(world: ConsoleWorld) -> dict[str, str]:
    return {
        "GIT_CONFIG_GLOBAL": os.environ["GIT_CONFIG_GLOBAL"],
        "PYTHONPATH": str(REPO),
        "TERM": "xterm-256color",
        "UNIDESK_REFRESH_S": "3600",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


def console_command(world: ConsoleWorld) -> list[str]:
    """`unidesk` with no subcommand: the console, on the world's workspace."""
    return [
        sys.executable,
        "-m",
        "unidesk_tui.cli",
        "--workspace",
        str(world.workspace),
        "--state-dir",
        str(world.state_dir),
    ]


def start_console(tmux: Tmux, world: ConsoleWorld, size: tuple[int, int] = (80, 24)) -> None:
    tmux.start(console_command(world), console_env(world), size)
    tmux.wait_text("SERVICE")
    tmux.wait_text("unreachable")


def test_ctrl_p_opens_the_palette_and_typing_goes_into_it(tmux: Tmux, world: ConsoleWorld) -> None:
    start_console(tmux, world)
    tmux.keys("C-p")
    tmux.wait_text("Search for commands")
    tmux.keys("2")  # in the palette this is text, not "switch to dev"
    time.sleep(0.5)
    assert "1:file" in tmux.screen() or "Search" in tmux.screen()
    tmux.keys("Escape")
    time.sleep(0.3)
    tmux.keys(":")
    tmux.wait_text("Search for commands")
    tmux.keys("Escape")
    time.sleep(0.3)
    tmux.keys("q")
    wait_for(tmux.dead, "the console to exit on q", 10)


def test_quit_does_not_wait_for_a_silent_host(tmux: Tmux, world: ConsoleWorld) -> None:
    """A host that accepts TCP but never speaks SSH: quitting during its refresh is immediate."""
    with silent_main_server(world):
        tmux.start(console_command(world), console_env(world), (100, 30))
        tmux.wait_text("SERVICE")
        time.sleep(1.0)  # the refresh is now waiting on the silent host
        started = time.monotonic()
        tmux.keys("q")
        wait_for(tmux.dead, "the console to exit", 10, 0.05)
        took = time.monotonic() - started
        assert took < 2.0, f"quit took {took:.1f} s"
