"""The lab's git remote ("GitHub"): bare repositories served by `git http-backend` over HTTP.

Runs in its own namespace on the lab "wan" (reachable from main-server and the operator, not from
the providers). URLs are `http://<addr>/git/<name>.git`; pushes are enabled (http.receivepack) so
tests can push new commits and force-push.

    python -m unidesk_lab.gitserver --root DIR --listen ADDR [--port 80]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
from pathlib import Path

from unidesk_lab.daemon import Daemon
from unidesk_lab.layout import GIT, GIT_PORT, Layout
from unidesk_lab.netns import tcp_open

log = logging.getLogger(__name__)


def init_bare(root: Path, name: str) -> Path:
    """Create (or reuse) the bare repository `<root>/<name>.git`, push-enabled."""
    path = root / f"{name}.git"
    if not (path / "HEAD").exists():
        subprocess.run(["git", "init", "-q", "--bare", "-b", "master", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "config", "http.receivepack", "true"], check=True)
    subprocess.run(["git", "-C", str(path), "config", "uploadpack.allowAnySHA1InWant", "true"], check=True)
    return path


def daemon(lay: Layout) -> Daemon:
    lay.git_root.mkdir(parents=True, exist_ok=True)
    addr = lay.git_address
    return Daemon(
        host=GIT,
        name="git-http",
        argv=[
            sys.executable,
            "-m",
            "unidesk_lab.gitserver",
            "--root",
            str(lay.git_root),
            "--listen",
            addr,
            "--port",
            str(GIT_PORT),
        ],
        ready=lambda: tcp_open(addr, GIT_PORT),
        netns=lay.netns(GIT),
    )


def make_app(root: Path):
    from aiohttp import web

    async def backend(request: web.Request) -> web.StreamResponse:
        body = await request.read()  # aiohttp has already undone chunking and Content-Encoding
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "GIT_PROJECT_ROOT": str(root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + request.match_info["path"],
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": request.remote or "",
            "REMOTE_USER": "lab",
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
            "HOME": str(root),
        }
        proc = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )

        async def feed():
            try:
                proc.stdin.write(body)
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                proc.stdin.close()

        feeder = asyncio.create_task(feed())
        errors = asyncio.create_task(proc.stderr.read())
        status, headers = 200, {}
        while True:
            line = await proc.stdout.readline()
            if line in (b"", b"\n", b"\r\n"):
                break
            key, _, value = line.decode("latin-1").partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            else:
                headers[key.strip()] = value.strip()
        resp = web.StreamResponse(status=status, headers=headers)
        await resp.prepare(request)
        while chunk := await proc.stdout.read(65536):
            await resp.write(chunk)
        await feeder
        rc = await proc.wait()
        err = await errors
        if rc or err:
            log.warning(
                "http-backend %s %s rc=%s %s", request.method, request.path, rc, err.decode(errors="replace").strip()
            )
        await resp.write_eof()
        return resp

    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/git/{path:.*}", backend)
    return app


def main(argv: list[str] | None = None) -> None:
    from aiohttp import web

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--listen", required=True)
    p.add_argument("--port", type=int, default=GIT_PORT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    web.run_app(make_app(args.root), host=args.listen, port=args.port, print=None, access_log_format='%a "%r" %s %b')


if __name__ == "__main__":
    main()
