#!/usr/bin/env python3
"""Yardstick only: Granian's RSGI server with the `pyreqwest` client (Rust's reqwest/hyper):
both HTTP ends in Rust, the relay in Python.

Does exactly what aiohttp_proxy.py does: swaps the client credential for the upstream key,
relays the request, and the response (non-streaming read whole, SSE relayed chunk by chunk as
the client reads it). Comparable client settings: at most 256 requests in flight, up to 256
idle pooled connections kept 60 s, 300 s total timeout, no decompression, no redirects.

The read buffer is 0 (`streamed_read_buffer_limit(0)`): with pyreqwest's default (64 KiB) a
response is handed over only once 64 KiB of its body (or all of it) has arrived, and later
chunks in 64 KiB batches, so the benchmark's 6 KB stream was relayed whole at its end, not
chunk by chunk (aiohttp_pyreqwest_proxy.py has the check).

pyreqwest hands out its own `Bytes` buffers; they are copied into `bytes` before Granian sends
them: Granian accepts any buffer, but relaying `Bytes` chunks as they are cut streamed
requests/s to less than half in a short check; the copy costs nothing measurable.

  python granian_pyreqwest_proxy.py --port 18086 --upstream http://127.0.0.1:18080
"""

from datetime import timedelta
from typing import Any

from granian_serve import HOP, RESP_DROP, parse_args, serve
from pyreqwest.client import Client, ClientBuilder


async def open_client() -> Client:
    """The upstream client (in the worker's event loop)."""
    return (
        ClientBuilder()
        .max_connections(256)
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(timedelta(seconds=60))
        .timeout(timedelta(seconds=300))
        .gzip(False)
        .brotli(False)
        .zstd(False)
        .deflate(False)
        .follow_redirects(False)
        .http1_only()
        .build()
    )


class Proxy:
    def __init__(self, upstream: str, upstream_key: str) -> None:
        self.up = upstream.rstrip("/")
        self.key = upstream_key
        self.client: Client | None = None

    def __rsgi_init__(self, loop: Any) -> None:  # in the worker, before it serves
        self.client = loop.run_until_complete(open_client())

    def __rsgi_del__(self, loop: Any) -> None:
        if self.client is not None:
            loop.run_until_complete(self.client.close())

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        assert self.client is not None
        body = await proto()
        headers = {k: v for k, v in scope.headers.items() if k.lower() not in HOP}
        headers["api-key"] = self.key
        url = self.up + scope.path + ("?" + scope.query_string if scope.query_string else "")
        req = self.client.request(scope.method, url).headers(headers).body_bytes(body)
        req = req.streamed_read_buffer_limit(0)  # each chunk as it arrives (module docstring)
        async with req.build_streamed() as r:
            rh = [(k, v) for k, v in r.headers.items() if k.lower() not in RESP_DROP]
            if (r.get_header("content-type") or "").startswith("text/event-stream"):
                tx = proto.response_stream(r.status, rh)
                reader = r.body_reader
                while (chunk := await reader.read_chunk()) is not None:
                    await tx.send_bytes(bytes(chunk))
                return
            proto.response_bytes(r.status, rh, bytes(await r.bytes()))


if __name__ == "__main__":
    args = parse_args(18086)
    serve(Proxy(args.upstream, args.upstream_key), args)
