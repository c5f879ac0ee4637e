"""Turn an exception in a console handler into a visible notification instead of a crash.

Textual ends the app (with a traceback) on any exception escaping a handler; for an operator
console that is the wrong trade: the job keeps running, the grid is still useful. Workers report
their own failures (exit_on_error=False + Worker.StateChanged); this covers actions and message
handlers.
"""

from __future__ import annotations

import functools
import inspect
import logging

log = logging.getLogger(__name__)


def _report(node, exc: Exception, where: str) -> None:
    log.exception("console handler %s failed", where)
    try:
        node.app.notify(f"{type(exc).__name__}: {exc}", title=f"{where} failed", severity="error", timeout=10)
    except Exception:  # no app any more (shutting down): nothing left to tell
        pass


def guarded(fn):
    """Wrap one handler (sync or async)."""
    if getattr(fn, "_unidesk_guarded", False):
        return fn
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(self, *args, **kwargs):
            try:
                return await fn(self, *args, **kwargs)
            except Exception as exc:
                _report(self, exc, fn.__name__)

        setattr(async_wrapper, "_unidesk_guarded", True)  # noqa: B010  (a marker mypy cannot see on _Wrapped)
        return async_wrapper

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:
            _report(self, exc, fn.__name__)

    setattr(wrapper, "_unidesk_guarded", True)  # noqa: B010
    return wrapper


def guard_handlers(cls):
    """Class decorator: guard every action_*, on_*/_on_* handler and @on-decorated method."""
    wrapped: dict = {}
    for name, value in list(vars(cls).items()):
        if not callable(value) or isinstance(value, (staticmethod, classmethod, type)) or name.startswith("__"):
            continue
        if name.startswith(("action_", "on_", "_on_")) or hasattr(value, "_textual_on"):
            wrapped[value] = guarded(value)
            setattr(cls, name, wrapped[value])
    # @on handlers were collected when the class was created: point them at the guarded versions.
    for handlers in (vars(cls).get("_decorated_handlers") or {}).values():
        handlers[:] = [(wrapped.get(method, method), selectors) for method, selectors in handlers]
    return cls
