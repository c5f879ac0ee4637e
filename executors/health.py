"""Service health through the UniDesk microservice proxy (`/api/microservices/<id>/health`).

Read from the operator's side over HTTP, exactly the path the frontend uses; the body's
`deploy.commit` / `deploy.repo` are evidence when the service exposes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp

from executors.stamp import health_commit

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 5.0
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class HealthReading:
    """One health read: `health` is healthy / unhealthy / unknown."""

    health: str
    url: str | None
    status: int | None = None
    body: Any = None
    commit: str | None = None
    repo: str | None = None
    error: str | None = None

    def as_evidence(self) -> dict:
        out: dict[str, Any] = {"url": self.url, "status": self.status, "health": self.health}
        if self.body is not None:
            out["body"] = self.body
        if self.error:
            out["error"] = self.error
        return out


def classify(status: int, body: Any) -> str:
    """healthy when 2xx and the body (if JSON with a status) does not say otherwise."""
    if not 200 <= status < 300:
        return "unhealthy"
    if isinstance(body, dict) and isinstance(body.get("status"), str):
        return "healthy" if body["status"].lower() in ("ok", "healthy", "up", "pass") else "unhealthy"
    return "healthy"


# One HTTP client shared by every probe of a command (set by `health_client`).
_shared: ContextVar[aiohttp.ClientSession | None] = ContextVar("unidesk_health_http", default=None)


@contextlib.asynccontextmanager
async def health_client():
    """Share one aiohttp session among all health reads inside this block."""
    async with aiohttp.ClientSession() as http:
        token = _shared.set(http)
        try:
            yield http
        finally:
            _shared.reset(token)


async def read_health(url: str | None, *, timeout: float = HEALTH_TIMEOUT) -> HealthReading:
    """GET the health URL; never raises (a failed read is `unknown` or `unhealthy`)."""
    if not url:
        return HealthReading("unknown", None, error="no microserviceProxy configured")
    http = _shared.get()
    if http is None:
        async with aiohttp.ClientSession() as own:
            token = _shared.set(own)
            try:
                return await read_health(url, timeout=timeout)
            finally:
                _shared.reset(token)
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False) as resp:
            raw = await resp.content.read(MAX_BODY)
            status = resp.status
    except asyncio.TimeoutError:
        return HealthReading("unknown", url, error=f"no answer within {timeout:g} s")
    except aiohttp.ClientError as exc:
        return HealthReading("unknown", url, error=f"{type(exc).__name__}: {exc}")
    text = raw.decode("utf-8", "replace")
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text[:2000]
    deploy = body.get("deploy") if isinstance(body, dict) and isinstance(body.get("deploy"), dict) else {}
    repo = deploy.get("repo") if isinstance(deploy.get("repo"), str) else None
    return HealthReading(classify(status, body), url, status, body, health_commit(body), repo)
