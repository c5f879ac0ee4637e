"""Service health through the UniDesk microservice proxy (`/api/microservices/<id>/health`).

Read from the operator's side over HTTP, exactly the path the frontend uses; the body's
`deploy.commit` / `deploy.repo` are evidence when the service exposes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp

from executors.stamp import health_commit
from unidesk_tui.model import Check, Health, Layer

HEALTH_TIMEOUT = 5.0
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class HealthReading:
    """One health read: `health` is healthy / unhealthy / unknown."""

    health: Health
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


def classify(status: int, body: Any) -> Health:
    """healthy when 2xx and the body (if JSON with a status) does not say otherwise."""
    if not 200 <= status < 300:
        return Health.UNHEALTHY
    if isinstance(body, dict) and isinstance(body.get("status"), str):
        return Health.HEALTHY if body["status"].lower() in ("ok", "healthy", "up", "pass") else Health.UNHEALTHY
    return Health.HEALTHY


# One HTTP client shared by every probe of a command (set by `health_client`), and the reads
# already started for it (health does not need SSH, so it overlaps with connecting to targets).
_shared: ContextVar[aiohttp.ClientSession | None] = ContextVar("unidesk_health_http", default=None)
_started: ContextVar[dict[str, asyncio.Future[HealthReading]] | None] = ContextVar(
    "unidesk_health_started", default=None
)


@contextlib.asynccontextmanager
async def health_client(prefetch: Sequence[str | None] = ()) -> AsyncIterator[aiohttp.ClientSession]:
    """Share one aiohttp session among all health reads inside this block; start `prefetch` now."""
    async with aiohttp.ClientSession() as http:
        token = _shared.set(http)
        started: dict[str, asyncio.Future[HealthReading]] = {}
        token2 = _started.set(started)
        try:
            for url in prefetch:
                if url and url not in started:
                    started[url] = asyncio.ensure_future(_read(http, url, HEALTH_TIMEOUT))
            yield http
        finally:
            for fut in started.values():
                fut.cancel()
            _started.reset(token2)
            _shared.reset(token)


async def read_health(url: str | None, *, timeout: float = HEALTH_TIMEOUT) -> HealthReading:
    """GET the health URL; never raises (a failed read is `unknown` or `unhealthy`)."""
    if not url:
        return HealthReading(Health.UNKNOWN, None, error="no microserviceProxy configured")
    started = _started.get()
    if started and url in started:
        # A prefetched read is used once; a later read of the same URL (e.g. while verifying) goes out again.
        return await started.pop(url)
    http = _shared.get()
    if http is None:
        async with aiohttp.ClientSession() as own:
            token = _shared.set(own)
            try:
                return await read_health(url, timeout=timeout)
            finally:
                _shared.reset(token)
    return await _read(http, url, timeout)


async def _read(http: aiohttp.ClientSession, url: str, timeout: float) -> HealthReading:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False) as resp:
            raw = await resp.content.read(MAX_BODY)
            status = resp.status
    except TimeoutError:
        return HealthReading(Health.UNKNOWN, url, error=f"no answer within {timeout:g} s")
    except aiohttp.ClientError as exc:
        return HealthReading(Health.UNKNOWN, url, error=f"{type(exc).__name__}: {exc}")
    text = raw.decode("utf-8", "replace")
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text[:2000]
    declared = body.get("deploy") if isinstance(body, dict) else None
    deploy: dict[str, Any] = declared if isinstance(declared, dict) else {}
    repo = deploy.get("repo") if isinstance(deploy.get("repo"), str) else None
    return HealthReading(classify(status, body), url, status, body, health_commit(body), repo)


def health_expected(catalog, service) -> bool:
    """Whether health must show the deployed `deploy.commit`: the service exposes it and the run
    (file mode, or the service's environment) has a microservice proxy to read it through."""
    ms = service.microservice
    return bool(ms and ms.health.exposesDeployCommit and catalog.health_url(service.id, service.environment))


def health_checks(reading: HealthReading, want: str | None, commit_expected: bool) -> list[Check]:
    """Verification's health layer: always healthy, and showing `want` where deploy.commit is exposed."""
    why = reading.error or (f"HTTP {reading.status}" if reading.status is not None else "no answer")
    status = reading.health if reading.health == Health.HEALTHY else f"{reading.health} ({why})"
    checks = [Check(Layer.HEALTH, "status", Health.HEALTHY, status, reading.health == Health.HEALTHY)]
    if commit_expected:
        checks.append(Check(Layer.HEALTH, "deploy.commit", want, reading.commit, reading.commit == want))
    return checks
