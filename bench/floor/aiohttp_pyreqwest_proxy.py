#!/usr/bin/env python3
"""Yardstick only: aiohttp's server (+ uvloop) with the `pyreqwest` client (Rust's
reqwest/hyper): the server Keyguard runs today, the upstream side in Rust.

Does exactly what aiohttp_proxy.py does: swaps the client credential for the upstream key,
relays the request, and the response (non-streaming read whole, SSE relayed chunk by chunk as
the client reads it). The client's settings are granian_pyreqwest_proxy.py's: at most 256
requests in flight, up to 256 idle pooled connections kept 60 s, 300 s total timeout, no
decompression, no redirects, HTTP/1.1.

The read buffer is 0 (`streamed_read_buffer_limit(0)`): with pyreqwest's default (64 KiB) the
response is handed over only once 64 KiB of its body (or all of it) has arrived, and later
chunks in 64 KiB batches, so an SSE stream shorter than that reaches the caller at its end
(checked: a stream of two events 1.5 s apart, first byte after 1.5 s through the default, after
milliseconds with 0). pyreqwest hands out its own `Bytes` buffers; they are copied into `bytes`
before aiohttp writes them.

  python aiohttp_pyreqwest_proxy.py --port 18088 --upstream http://127.0.0.1:18080
"""

import argparse
import asyncio
from datetime import timedelta

from aiohttp import web
from aiohttp_proxy import HOP, RESP_DROP
from pyreqwest.client import Client, ClientBuilder


async def open_client() -> Client:
    """granian_pyreqwest_proxy.py's client (copied, so that Granian is not loaded here)."""
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18088)
    ap.add_argument("--upstream", default="http://127.0.0.1:18080")
    ap.add_argument("--upstream-key", default="test")
    args = ap.parse_args()
    up = args.upstream.rstrip("/")

    async def on_startup(app):
        app["c"] = await open_client()

    async def on_cleanup(app):
        await app["c"].close()

    async def proxy(request: web.Request):
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        headers["api-key"] = args.upstream_key
        req = request.app["c"].request(request.method, up + request.path_qs)
        req = req.headers(headers).body_bytes(body).streamed_read_buffer_limit(0)
        async with req.build_streamed() as r:
            rh = [(k, v) for k, v in r.headers.items() if k.lower() not in RESP_DROP]
            if (r.get_header("content-type") or "").startswith("text/event-stream"):
                resp = web.StreamResponse(status=r.status, headers=rh)
                await resp.prepare(request)
                reader = r.body_reader
                while (chunk := await reader.read_chunk()) is not None:
                    await resp.write(bytes(chunk))
                await resp.write_eof()
                return resp
            return web.Response(status=r.status, body=bytes(await r.bytes()), headers=rh)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", proxy)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
