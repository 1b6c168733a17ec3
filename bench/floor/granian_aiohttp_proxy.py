#!/usr/bin/env python3
"""Yardstick only: the aiohttp pass-through (`aiohttp_proxy.py`) with Granian's RSGI server
in place of aiohttp's: Granian (Rust) parses HTTP, the aiohttp client talks to the upstream.

Does exactly what aiohttp_proxy.py does: swaps the client credential for the upstream key,
relays the request, and the response (non-streaming read whole, SSE relayed chunk by chunk as
the client reads it). Same client settings (256 pooled connections, keep-alive 60 s).

  python granian_aiohttp_proxy.py --port 18085 --upstream http://127.0.0.1:18080
"""

from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from granian_serve import HOP, RESP_DROP, parse_args, serve


class Proxy:
    def __init__(self, upstream: str, upstream_key: str) -> None:
        self.up = upstream.rstrip("/")
        self.key = upstream_key
        self.session: ClientSession | None = None

    async def _open(self) -> ClientSession:
        return ClientSession(
            connector=TCPConnector(limit=256, keepalive_timeout=60),
            timeout=ClientTimeout(total=300),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )

    def __rsgi_init__(self, loop: Any) -> None:  # in the worker, before it serves
        self.session = loop.run_until_complete(self._open())

    def __rsgi_del__(self, loop: Any) -> None:
        if self.session is not None:
            loop.run_until_complete(self.session.close())

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        assert self.session is not None
        body = await proto()
        headers = {k: v for k, v in scope.headers.items() if k.lower() not in HOP}
        headers["api-key"] = self.key
        url = self.up + scope.path + ("?" + scope.query_string if scope.query_string else "")
        async with self.session.request(scope.method, url, data=body, headers=headers) as r:
            rh = [(k, v) for k, v in r.headers.items() if k.lower() not in RESP_DROP]
            if r.content_type == "text/event-stream":
                tx = proto.response_stream(r.status, rh)
                async for chunk in r.content.iter_any():
                    await tx.send_bytes(chunk)
                return
            proto.response_bytes(r.status, rh, await r.read())


if __name__ == "__main__":
    args = parse_args(18085)
    serve(Proxy(args.upstream, args.upstream_key), args)
