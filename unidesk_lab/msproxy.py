"""The main server's microservice proxies: `GET /api/microservices/<id>/health`, as the frontend uses it.

Each request re-reads the lab workspace's config.json. A Docker service is forwarded to
`http://<target ssh.host>:<health.port><health.path>`. A k3s service is forwarded to its first
declared Service, `<svc>.<namespace>.svc.cluster.local`, at the health port when the Service has it
(else its first port): the name is resolved from the cluster file D601's pod network writes
(`unidesk_lab.podnet`), and main-server routes the Service range to D601, as a real proxy reaching a
ClusterIP would. Unknown ids give 404, an unreachable or failing upstream 502, both with a JSON body.

One proxy per environment: production's (file mode, the catalog's base entries) and, with
`--env dev`, the dev environment's own, which answers only for services with a dev override and
routes them to the dev objects (environments.dev.k8s in config.json).

    python -m unidesk_lab.msproxy --config FILE --listen ADDR [--port 8090] [--env dev] [--cluster FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from unidesk_lab.daemon import Daemon
from unidesk_lab.layout import DEV_MSPROXY_PORT, MAIN, MSPROXY_PORT, Layout
from unidesk_lab.netns import tcp_open

_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def daemon(lay: Layout, env: str | None = None) -> Daemon:
    addr = lay.address(MAIN)
    port = DEV_MSPROXY_PORT if env == "dev" else MSPROXY_PORT
    argv = [
        sys.executable,
        "-m",
        "unidesk_lab.msproxy",
        "--config",
        str(lay.workspace / "config.json"),
        "--listen",
        addr,
        "--port",
        str(port),
        "--cluster",
        str(lay.cluster_file),
    ] + (["--env", env] if env else [])
    return Daemon(
        host=MAIN,
        name="msproxy-dev" if env == "dev" else "msproxy",
        argv=argv,
        ready=lambda: tcp_open(addr, port),
        in_host=True,
    )


def _read_cluster(path: Path | None) -> dict:
    try:
        return json.loads(path.read_text()).get("services", {}) if path else {}
    except (OSError, ValueError):
        return {}


def upstream_url(
    config: dict, service_id: str, env: str | None = None, cluster_file: Path | None = None
) -> tuple[str | None, str | None]:
    """(url, None) for a known service with a health port, else (None, reason)."""
    svc = next((m for m in config.get("microservices", []) if m.get("id") == service_id), None)
    if svc is None:
        return None, "unknown_service"
    override: dict = {}
    if env:
        override = (svc.get("environments") or {}).get(env) or {}
        if not override:
            return None, "unknown_service"  # not part of this environment
    deployment = override.get("deployment") or svc.get("deployment") or {}
    health = svc.get("health") or {}
    path = health.get("path", "/health")
    k8s = override.get("k8s") or svc.get("k8s")
    if deployment.get("mode") == "k3sctl-managed" and k8s and k8s.get("services"):
        entry = _read_cluster(cluster_file).get(f"{k8s['namespace']}/{k8s['services'][0]}")
        if entry is None:
            return None, "no_service_endpoint"
        ports = [p["port"] for p in entry.get("ports") or []]
        port = health.get("port") if health.get("port") in ports else (ports[0] if ports else None)
        host = entry.get("clusterIP")
        if not host or host == "None":  # headless: the pod's own address
            host = (entry.get("endpoints") or [{}])[0].get("ip")
        if not host or not port:
            return None, "no_service_endpoint"
        return f"http://{host}:{int(port)}{path}", None
    target_id = deployment.get("target")
    target = next((t for t in config.get("targets", []) if t.get("id") == target_id), None)
    if target is None or not health.get("port"):
        return None, "no_health_endpoint"
    return f"http://{target['ssh']['host']}:{int(health['port'])}{path}", None


def make_app(config_path: Path, env: str | None = None, cluster_file: Path | None = None):
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
        url, reason = upstream_url(config, sid, env, cluster_file)
        if url is None:
            status = 404 if reason == "unknown_service" else 502
            return error(status, reason, f"microservice {sid!r}: {reason.replace('_', ' ')}")
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, allow_redirects=False) as resp,
            ):
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
    p.add_argument("--env", choices=["dev"], help="the environment this proxy serves (default: production)")
    p.add_argument("--cluster", type=Path, help="cluster.json of D601's pod network (k3s Services)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    web.run_app(make_app(args.config, args.env, args.cluster), host=args.listen, port=args.port, print=None)


if __name__ == "__main__":
    main()
