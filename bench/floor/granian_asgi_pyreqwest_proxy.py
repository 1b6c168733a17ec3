#!/usr/bin/env python3
"""Yardstick only: `granian_pyreqwest_proxy.py` on Granian's ASGI interface instead of RSGI.

The same relay with the same pyreqwest client; the difference is the interface: Granian
applies back-pressure to streamed ASGI responses (since 2.8.0), not to RSGI ones, so this
measures what that safety costs. ASGI messages are dicts, headers byte pairs.

  python granian_asgi_pyreqwest_proxy.py --port 18087 --upstream http://127.0.0.1:18080
"""

from typing import Any

from granian.constants import Interfaces
from granian_pyreqwest_proxy import open_client
from granian_serve import HOP, RESP_DROP, parse_args, serve
from pyreqwest.client import Client


class Proxy:
    def __init__(self, upstream: str, upstream_key: str) -> None:
        self.up = upstream.rstrip("/")
        self.key = upstream_key
        self.client: Client | None = None

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self.client = await open_client()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.client is not None
        parts, more = [], True
        while more:
            msg = await receive()
            parts.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP
        }
        headers["api-key"] = self.key
        qs = scope["query_string"].decode("latin-1")
        url = self.up + scope["path"] + ("?" + qs if qs else "")
        req = self.client.request(scope["method"], url).headers(headers).body_bytes(b"".join(parts))
        req = req.streamed_read_buffer_limit(0)  # each chunk as it arrives (granian_pyreqwest)
        async with req.build_streamed() as r:
            rh = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in r.headers.items()
                if k.lower() not in RESP_DROP
            ]
            await send({"type": "http.response.start", "status": r.status, "headers": rh})
            if (r.get_header("content-type") or "").startswith("text/event-stream"):
                reader = r.body_reader
                while (chunk := await reader.read_chunk()) is not None:
                    await send(
                        {"type": "http.response.body", "body": bytes(chunk), "more_body": True}
                    )
                await send({"type": "http.response.body", "body": b""})
                return
            await send({"type": "http.response.body", "body": bytes(await r.bytes())})


if __name__ == "__main__":
    args = parse_args(18087)
    serve(Proxy(args.upstream, args.upstream_key), args, Interfaces.ASGI)
