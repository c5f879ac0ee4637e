"""Interrupts around a launch: a signal stops the CLI before a job exists, or waits until the
started job's id has been printed, never in between (issue 13).

The CLI runs a command in `interruptible()`; SIGINT, SIGHUP and SIGTERM then raise `Interrupted`
until the launch calls `hold()`, from where on they are only recorded, to be acted on once the
document naming the job is out. Outside such a block (the console, tests) `hold()` does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Block:
    def __init__(self) -> None:
        self.holding = False
        self.pending: list[int] = []


_block: _Block | None = None


def _handler(signum: int, _frame: object) -> None:
    if _block is not None and _block.holding:
        _block.pending.append(signum)
        return
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[list[int]]:
    """Yields the list of signals held back after `hold()` (empty when none arrived)."""
    global _block
    if threading.current_thread() is not threading.main_thread() or _block is not None:
        yield []
        return
    block = _Block()
    saved = {s: signal.signal(s, _handler) for s in HANDLED}
    _block = block
    try:
        yield block.pending
    finally:
        _block = None
        for s, handler in saved.items():
            signal.signal(s, handler)


def hold() -> None:
    """From here to the end of the enclosing `interruptible()` block, signals are only recorded."""
    if _block is not None:
        _block.holding = True


def exit_code(pending: list[int]) -> int | None:
    """The shell's exit status for the first held signal (128 + its number), if any."""
    return 128 + pending[0] if pending else None
