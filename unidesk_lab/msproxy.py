"""The main server's microservice proxy: `GET /api/microservices/<id>/health`, as the frontend uses it.

Each request re-reads the lab workspace's config.json, finds the service's target (its ssh.host)
and `health.port`/`health.path`, and forwards to `http://<target>:<port><path>`, wherever the
service runs (main-server, a provider, or a k3s pod on D601's host network). Unknown ids give 404,
an unreachable or failing upstream 502, both with a JSON error body.

    python -m unidesk_lab.msproxy --config FILE --listen ADDR [--port 8090]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from unidesk_lab.daemon import Daemon
from unidesk_lab.layout import MAIN, MSPROXY_PORT, Layout
from unidesk_lab.netns import tcp_open

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def daemon(lay: Layout) -> Daemon:
    addr = lay.address(MAIN)
    return Daemon(
        host=MAIN,
        name="msproxy",
        argv=[sys.executable, "-m", "unidesk_lab.msproxy", "--config", str(lay.workspace / "config.json"), "--listen", addr, "--port", str(MSPROXY_PORT)],
        ready=lambda: tcp_open(addr, MSPROXY_PORT),
        in_host=True,
    )


def upstream_url(config: dict, service_id: str) -> tuple[str | None, str | None]:
    """(url, None) for a known service with a health port, else (None, reason)."""
    svc = next((m for m in config.get("microservices", []) if m.get("id") == service_id), None)
    if svc is None:
        return None, "unknown_service"
    target_id = (svc.get("deployment") or {}).get("target")
    target = next((t for t in config.get("targets", []) if t.get("id") == target_id), None)
    health = svc.get("health") or {}
    if target is None or not health.get("port"):
        return None, "no_health_endpoint"
    return f"http://{target['ssh']['host']}:{int(health['port'])}{health.get('path', '/health')}", None


def make_app(config_path: Path):
    import aiohttp
    from aiohttp import web

    def error(status: int, code: str, message: str) -> web.Response:
        return web.json_response({"ok": False, "errors": [{"code": code, "message": message}]}, status=status)

    async def health(request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if not _ID_RE.match(sid):
            return error(404, "unknown_service", f"no microservice {sid!r}")
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            return error(502, "config_unreadable", f"cannot read {config_path}: {exc}")
        url, reason = upstream_url(config, sid)
        if url is None:
            status = 404 if reason == "unknown_service" else 502
            return error(status, reason, f"microservice {sid!r}: {reason.replace('_', ' ')}")
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, allow_redirects=False) as resp:
                body = await resp.read()
                if resp.status >= 500:
                    return error(502, "upstream_failed", f"{url} answered {resp.status}")
                return web.Response(status=resp.status, body=body, content_type=resp.content_type or "application/json")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return error(502, "upstream_unreachable", f"{url}: {exc or type(exc).__name__}")

    app = web.Application()
    app.router.add_get("/api/microservices/{id}/health", health)
    return app


def main(argv: list[str] | None = None) -> None:
    from aiohttp import web

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--listen", required=True)
    p.add_argument("--port", type=int, default=MSPROXY_PORT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    web.run_app(make_app(args.config), host=args.listen, port=args.port, print=None)


if __name__ == "__main__":
    main()
