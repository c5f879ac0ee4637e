"""Node-local egress proxy of a provider: listens on 127.0.0.1:18789 inside the provider namespace
and opens upstream connections from the main-server namespace (the provider-gateway WS egress of
the specification, minus the WebSocket). Handles CONNECT and absolute-URI requests, one request per
client connection, and appends one JSON line per request to `<host root>/egress.log`.

The listening socket is created before the process moves itself (setns) into the main-server
namespace, so it stays in the provider's namespace while every later socket is created upstream.

    python -m unidesk_lab.egress --host D601 --port 18789 --upstream-netns NS --log FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from unidesk_lab.daemon import Daemon
from unidesk_lab.layout import EGRESS_PORT, MAIN, Layout
from unidesk_lab.netns import setns_process, tcp_open_in

log = logging.getLogger(__name__)

_HOP_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}


def daemon(lay: Layout, host: str) -> Daemon:
    ns = lay.netns(host)
    return Daemon(
        host=host,
        name="egress",
        argv=[
            sys.executable,
            "-m",
            "unidesk_lab.egress",
            "--host",
            host,
            "--port",
            str(EGRESS_PORT),
            "--upstream-netns",
            lay.netns(MAIN),
            "--log",
            str(lay.egress_log(host)),
        ],
        ready=lambda: tcp_open_in(ns, "127.0.0.1", EGRESS_PORT),
        netns=ns,  # not the host's mount namespace: it must still see /run/netns to setns upstream
    )


class Proxy:
    def __init__(self, host: str, logpath: Path):
        self.host = host
        self.logpath = logpath

    def record(self, **entry) -> None:
        entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "host": self.host, **entry}
        with open(self.logpath, "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = writer.get_extra_info("peername")
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            await self._reply(writer, 400, "bad request line")
            return
        if method == "CONNECT":
            hostport, first = target, b""
        else:
            url = urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                self.record(
                    client=str(client), method=method, target=target, result="error", error="not an absolute http URI"
                )
                await self._reply(writer, 400, "absolute http URI required")
                return
            hostport = f"{url.hostname}:{url.port or 80}"
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            headers = [h for h in lines[1:] if h and h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS]
            first = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""]).encode("latin-1")
        host, _, port = hostport.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), 10)
        except (TimeoutError, OSError, ValueError) as exc:
            self.record(
                client=str(client), method=method, target=target, result="error", error=str(exc) or type(exc).__name__
            )
            await self._reply(writer, 502, f"upstream connect failed: {exc}")
            return
        self.record(client=str(client), method=method, target=target, result="ok")
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(first)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                if dst.can_write_eof():
                    dst.write_eof()
                else:
                    dst.close()
            except (OSError, RuntimeError):
                pass

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, message: str) -> None:
        body = message.encode()
        writer.write(
            f"HTTP/1.1 {status} {message}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )
        try:
            await writer.drain()
        finally:
            writer.close()


async def _serve(sock: socket.socket, proxy: Proxy) -> None:
    server = await asyncio.start_server(proxy.handle, sock=sock)
    print(f"egress proxy for {proxy.host} listening on {sock.getsockname()}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=EGRESS_PORT)
    p.add_argument("--upstream-netns", required=True)
    p.add_argument("--log", required=True, type=Path)
    args = p.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    setns_process(args.upstream_netns)  # from here on, new sockets are created upstream
    asyncio.run(_serve(sock, Proxy(args.host, args.log)))


if __name__ == "__main__":
    main()
