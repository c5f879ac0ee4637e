"""Secret redaction for anything written to a job log or a JSON result.

Two layers: patterns that catch credentials by shape (URL userinfo, `Authorization:` headers,
`*_TOKEN=`-style assignments, well-known token prefixes) and literal values a caller registered as
secret (e.g. a token read from the environment). Redaction is applied before text reaches disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable

MASK = "***"

# name=value / name: value where the name says "secret". Covers env dumps, build-arg echoes,
# `--build-arg NPM_TOKEN=...`, JSON-ish `"password": "..."` and query strings.
SECRET_NAME = (
    r"[A-Za-z0-9_.-]*(?:passw(?:or)?d|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)"
    r"[A-Za-z0-9_.-]*"
)
# scheme://user:pass@host and scheme://token@host: the userinfo runs to the LAST '@' of the
# authority (a password may itself contain '@'), which ends at '/', '?', '#' or whitespace.
URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")
_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (URL_USERINFO, r"\1" + MASK + "@"),
    # Authorization / Proxy-Authorization headers, any scheme
    (
        re.compile(r"(?i)\b((?:proxy-)?authorization\s*[:=]\s*)(?:(basic|bearer|token|digest)\s+)?\S+"),
        lambda m: m.group(1) + (m.group(2) + " " if m.group(2) else "") + MASK,
    ),
    # "name": "value" (JSON)
    (re.compile(r'(?i)("' + SECRET_NAME + r'"\s*:\s*")[^"]*(")'), r"\1" + MASK + r"\2"),
    # name=value, name: value (env, args, query strings)
    (
        re.compile(r"(?i)\b(" + SECRET_NAME + r")(\s*[=:]\s*)(?!\*\*\*)(\"[^\"]*\"|'[^']*'|[^\s&\"',;]+)"),
        r"\1\2" + MASK,
    ),
    # well-known token shapes
    (
        re.compile(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})\b"
        ),
        MASK,
    ),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"), MASK),
)


class Redactor:
    """Applies the patterns plus registered literal secrets; literal values shorter than 4
    characters are ignored (masking "a" everywhere would destroy the log, not protect anything)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        # Longest first, so a secret containing another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Redact one text with the patterns and the given literal secrets."""
    return Redactor(secrets)(text)


def redact_url(text: str) -> str:
    """Mask URL userinfo (tokens, passwords) in a URL or a text that contains URLs."""
    return URL_USERINFO.sub(r"\1" + MASK + "@", text)


def secret_env_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names say they are secret (e.g. NPM_TOKEN)."""
    pattern = re.compile(rf"(?i)^{SECRET_NAME}$")
    return [v for k, v in (os.environ if environ is None else environ).items() if pattern.match(k)]
