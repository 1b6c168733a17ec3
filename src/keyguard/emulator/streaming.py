"""Writing answers: server-sent events, JSON bodies, and connections cut on purpose.

Streams are ``text/event-stream``; each event is ``data: {json}\\n\\n`` (preceded by
``event: <type>\\n`` for the Responses API) and chat/completions streams end with
``data: [DONE]``. With no pacing delay the whole stream is written in one go; with a delay the
first event is flushed at once and every later one waits ``delay`` seconds. A ``mid_stream``
drop fault aborts the TCP connection after ``after_chunks`` events (or, for a JSON answer,
after half the body): the client sees a truncated answer, never a clean end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from keyguard.emulator.faults import Fault

__all__ = ["Event", "encode_event", "write_stream", "write_body", "write_json", "drop_connection"]

Event = tuple[str | None, dict[str, Any]]
_DONE = b"data: [DONE]\n\n"
_STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, must-revalidate",
    "x-accel-buffering": "no",
}


def encode_event(event: Event) -> bytes:
    name, data = event
    prefix = f"event: {name}\n".encode() if name else b""
    return prefix + b"data: " + orjson.dumps(data) + b"\n\n"


def drop_connection(request: web.Request) -> None:
    """Cut the client's connection without a proper end (an RST where the OS allows)."""
    transport = request.transport
    if transport is not None:
        transport.abort()


async def write_stream(
    request: web.Request,
    events: Iterable[Event],
    *,
    done_marker: bool,
    delay: float,
    drop: Fault | None,
) -> tuple[web.StreamResponse, bool]:
    """Stream ``events``; the flag tells whether the whole stream reached the client."""
    response = web.StreamResponse(status=200, headers=_STREAM_HEADERS)
    await response.prepare(request)
    limit = drop.after_chunks if drop is not None and drop.drop == "mid_stream" else None
    try:
        if delay <= 0:
            encoded = [encode_event(e) for e in events]
            if limit is not None:
                await response.write(b"".join(encoded[:limit]))
                drop_connection(request)
                return response, False
            if done_marker:
                encoded.append(_DONE)
            await response.write(b"".join(encoded))
        else:
            for position, event in enumerate(events):
                if limit is not None and position == limit:
                    drop_connection(request)
                    return response, False
                if position:
                    await asyncio.sleep(delay)
                await response.write(encode_event(event))
            if limit is not None:
                drop_connection(request)
                return response, False
            if done_marker:
                await asyncio.sleep(delay)
                await response.write(_DONE)
        await response.write_eof()
    except ConnectionError:
        return response, False
    return response, True


async def write_body(
    request: web.Request,
    payload: bytes,
    content_type: str,
    drop: Fault | None,
    status: int = 200,
) -> tuple[web.StreamResponse, bool]:
    """A whole answer; with a ``mid_stream`` drop, half of it and a cut connection."""
    if drop is None or drop.drop != "mid_stream":
        whole = web.Response(status=status, body=payload)
        whole.headers["Content-Type"] = content_type
        return whole, True
    response = web.StreamResponse(status=status)
    response.headers["Content-Type"] = content_type
    response.content_length = len(payload)
    try:
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
    except ConnectionError:
        return response, False
    drop_connection(request)
    return response, False


async def write_json(
    request: web.Request, body: dict[str, Any], drop: Fault | None, status: int = 200
) -> tuple[web.StreamResponse, bool]:
    return await write_body(request, orjson.dumps(body), "application/json", drop, status)
