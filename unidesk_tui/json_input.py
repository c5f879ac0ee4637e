"""Reading operator-supplied JSON (config.json, deploy.json): every way it can be unreadable is a
coded problem naming the reason, never an exception from the decoder (issue 13).

Refused: bytes that are not UTF-8, invalid JSON, nesting deeper than MAX_DEPTH, integers longer
than Python converts (4300 digits), and strings or keys holding a lone surrogate (`"\\ud800"`),
which no JSON document we print could carry back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from unidesk_tui.errors import ErrorCode, UnideskError

MAX_DEPTH = 64  # real documents nest < 10 deep; the decoder itself gives up near 1000
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _check(doc: Any, origin: str, code: ErrorCode) -> None:
    """Depth and lone surrogates, walked without recursion."""
    stack: list[tuple[Any, str, int]] = [(doc, "$", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UnideskError.of(code, f"{origin}: JSON nested more than {MAX_DEPTH} levels deep (at {path[:80]}…)")
        if isinstance(value, str) and _has_surrogate(value):
            raise UnideskError.of(
                code, f"{origin}: {path[:120]}: a string holds a lone surrogate (invalid Unicode)", path=path
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if _has_surrogate(key):
                    raise UnideskError.of(
                        code, f"{origin}: {path[:120]}: a key holds a lone surrogate (invalid Unicode)", path=path
                    )
                stack.append((item, key if path == "$" else f"{path}.{key}", depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


def load_json(
    data: str | bytes,
    *,
    origin: str,
    code: ErrorCode,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """Decode `data`; raise UnideskError(code) saying why it cannot be read. Errors raised by
    `object_pairs_hook` (e.g. a duplicate key) pass through."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnideskError.of(code, f"{origin}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        doc = json.loads(data, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise UnideskError.of(code, f"{origin}: invalid JSON at {where}: {exc.msg}") from None
    except RecursionError:
        raise UnideskError.of(code, f"{origin}: JSON nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # int() refuses numbers of more than sys.get_int_max_str_digits() digits
        if "digits" not in str(exc):
            raise
        raise UnideskError.of(code, f"{origin}: a number is too long (over 4300 digits)") from None
    _check(doc, origin, code)
    return doc
