"""Blocking calls the console must never wait for when it quits (SSH reads of a silent host).

Textual's thread workers are ordinary threads, and the interpreter joins those at exit: one SSH
read stuck on a silent host held the quit for its whole timeout. A daemon thread is not joined.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting worker was cancelled (the console is closing)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def in_daemon_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn` in a daemon thread and await its result; cancelling the await abandons the thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def run() -> None:
        try:
            result, error = fn(*args, **kwargs), None
        except BaseException as exc:  # handed to the awaiting side
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(_settle, future, result, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            log.debug("%s finished after the console closed", getattr(fn, "__name__", fn))

    threading.Thread(target=run, name=f"unidesk-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    return await future
