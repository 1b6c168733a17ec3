"""The incoming side of the transport seam on each HTTP server, over real sockets: aiohttp's
low-level server with its request factory (``proxy/aiohttp_server.py``) and Granian's
embedded ASGI server with the ASGI adapter (``proxy/asgi_server.py``, ``proxy/granian_server.py``).
Each is what :mod:`keyguard.core.transport` declares (mypy checks the assignments below) and
behaves as it says: the request as sent, the body cap as chunks arrive, a streamed answer sent
as written with a client gone surfacing as ``ClientGone``, back-pressure. The body timeouts
the ASGI adapter times itself are here too (aiohttp's: tests/proxy/test_connection_guard.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from keyguard.config import settings_from_mapping
from keyguard.core.transport import Answer, ClientGone, Incoming, StreamedAnswer
from keyguard.errors import ConfigurationError, RequestError
from keyguard.proxy.aiohttp_server import (
    AiohttpIncoming,
    AiohttpStream,
    AiohttpWhole,
    request_factory,
    web_response,
)
from keyguard.proxy.asgi_server import AsgiIncoming, AsgiProxy, AsgiStream, AsgiWhole
from keyguard.proxy.connections import ConnectionGuard, ConnectionLimits
from keyguard.proxy.granian_server import GranianSite
from keyguard.proxy.responses import error_response

_INCOMING: tuple[type[Incoming], ...] = (AiohttpIncoming, AsgiIncoming)
_ANSWER: tuple[type[Answer], ...] = (AiohttpWhole, AsgiWhole)
_STREAM: tuple[type[StreamedAnswer], ...] = (AiohttpStream, AsgiStream)

Handler = Callable[[Incoming], Awaitable[Answer | StreamedAnswer]]
Serve = Callable[[Handler], Awaitable[str]]
MAX_BODY = 2000
# the body timeouts of the ASGI adapter's tests: short, and never reached by the other tests
LIMITS = ConnectionLimits(body_grace_s=0.3, body_timeout_s=0.6, min_body_rate=1000.0)


async def _aiohttp(handler: Handler, stack: list[Callable[[], Awaitable[None]]]) -> str:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        assert isinstance(request, AiohttpIncoming)  # the factory's
        return web_response(await handler(request))

    runner = web.ServerRunner(web.Server(handle, request_factory=request_factory(MAX_BODY)))
    await runner.setup()
    stack.append(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


async def _granian(handler: Handler, stack: list[Callable[[], Awaitable[None]]]) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    site = GranianSite(
        AsgiProxy(handler, ConnectionGuard(LIMITS)), sock, limits=LIMITS, backlog=128
    )
    await site.start()

    async def stop() -> None:
        await site.stop()
        sock.close()

    stack.append(stop)
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@pytest.fixture(params=["aiohttp", "granian"])
async def serve(request: pytest.FixtureRequest) -> AsyncIterator[Serve]:
    """Start the server ``request.param`` with ``handler`` as the pipeline; its URL."""
    stops: list[Callable[[], Awaitable[None]]] = []
    start = _aiohttp if request.param == "aiohttp" else _granian

    async def serve(handler: Handler) -> str:
        return await start(handler, stops)

    try:
        yield serve
    finally:
        for stop in reversed(stops):
            await stop()


async def _exchange(url: str, raw: bytes) -> bytes:
    host, _, port = url.removeprefix("http://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(raw)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_the_request_reads_as_the_pipeline_needs_it(serve: Serve) -> None:
    seen: dict[str, object] = {}

    async def handler(incoming: Incoming) -> Answer:
        headers = incoming.headers
        seen.update(
            method=incoming.method,
            raw_path=incoming.raw_path,
            path=incoming.path,
            forwarded=headers.getall("x-forwarded-for", ()),
            absent=headers.getall("x-absent", ()),
            missing=headers.get("x-missing"),
            has_key="API-KEY" in headers,
            length=incoming.content_length,
            ctype=incoming.content_type,
            remote=incoming.remote,
            certificate=incoming.peer_certificate(),
            body=await incoming.read_body(MAX_BODY),
        )
        return incoming.answer(201, {"Server": "keyguard", "Content-Type": "x/y"}, b"ok")

    answer = await _exchange(  # raw bytes: the headers repeat, the query is not normalised
        await serve(handler),
        b"POST /a%20b/c?api-version=x&q=%2F HTTP/1.1\r\nHost: gw\r\napi-key: k\r\n"
        b"X-Forwarded-For: 192.0.2.1\r\nx-forwarded-for: 192.0.2.2, 192.0.2.3\r\n"
        b"Content-Type: application/json; charset=utf-8\r\nContent-Length: 7\r\n"
        b"Connection: close\r\n\r\n"
        b'{"a":1}',
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = [line.lower() for line in head.split(b"\r\n")]
    assert lines[0].startswith(b"http/1.1 201 ") and body == b"ok"
    assert b"server: keyguard" in lines and b"content-type: x/y" in lines
    assert b"content-length: 2" in lines
    assert seen == {
        "method": "POST",
        "raw_path": "/a%20b/c?api-version=x&q=%2F",
        "path": "/a b/c",
        "forwarded": ["192.0.2.1", "192.0.2.2, 192.0.2.3"],
        "absent": (),
        "missing": None,
        "has_key": True,
        "length": 7,
        "ctype": "application/json",
        "remote": "127.0.0.1",
        "certificate": None,
        "body": b'{"a":1}',
    }


@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_above_the_cap_reads_as_none(serve: Serve, declared: bool) -> None:
    bodies: list[bytes | None] = []

    async def handler(request: Incoming) -> Answer:
        bodies.append(await request.read_body(MAX_BODY))
        return request.answer(413, {}, b"")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * 1000

    url = await serve(handler)
    data: bytes | AsyncIterator[bytes] = b"x" * 3000 if declared else chunks()
    async with aiohttp.ClientSession() as session, session.post(url, data=data) as r:
        assert r.status == 413
        assert ("Content-Length" in r.request_info.headers) is declared
    assert bodies == [None]


async def test_a_body_in_chunks_under_the_cap_reads_whole(serve: Serve) -> None:
    bodies: list[bytes | None] = []

    async def handler(request: Incoming) -> Answer:
        bodies.append(await request.read_body(MAX_BODY))
        return request.answer(200, {}, b"")

    async def chunks() -> AsyncIterator[bytes]:
        for n in range(3):
            yield str(n).encode() * 500

    async with aiohttp.ClientSession() as session:
        async with session.post(await serve(handler), data=chunks()) as r:
            assert r.status == 200
    assert bodies == [b"0" * 500 + b"1" * 500 + b"2" * 500]


async def test_a_streamed_answer_is_sent_as_written_and_a_client_gone_raises(
    serve: Serve,
) -> None:
    client_left, handled = asyncio.Event(), asyncio.Event()
    outcome: list[object] = []

    async def handler(request: Incoming) -> StreamedAnswer:
        stream = request.stream(200, {"Content-Type": "text/event-stream"})
        outcome.append(stream.started)
        await stream.start()
        outcome.append(stream.started)
        await stream.write(b"data: 1\n\n")
        await client_left.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8
        try:
            # the kernel takes a few writes, and the server a few turns of the loop (Granian
            # tells of a closed connection from its own thread), before a write says so
            while loop.time() < deadline:
                await stream.write(b"x" * 65536)
                await asyncio.sleep(0)
        except ClientGone:
            outcome.append("gone")
        handled.set()
        return stream

    url = await serve(handler)
    async with aiohttp.ClientSession() as session:
        response = await session.get(url)
        assert response.headers["Content-Type"] == "text/event-stream"
        assert await response.content.readany() == b"data: 1\n\n"  # before the stream ends
        response.close()  # the connection goes with it
    client_left.set()
    await asyncio.wait_for(handled.wait(), 10)
    assert outcome == [False, True, "gone"]


async def test_a_streamed_answer_waits_for_a_caller_that_does_not_read(serve: Serve) -> None:
    """Back-pressure: the writes stop returning while the caller reads nothing, and resume
    when it reads again; the whole stream arrives."""
    written = 0
    stalled, done = asyncio.Event(), asyncio.Event()
    chunk, chunks = b"y" * 65536, 256  # 16 MiB: far beyond the socket buffers

    async def handler(request: Incoming) -> StreamedAnswer:
        nonlocal written
        stream = request.stream(200, {"Content-Type": "application/octet-stream"})
        await stream.start()
        for _ in range(chunks):
            write = asyncio.ensure_future(stream.write(chunk))
            if not (await asyncio.wait({write}, timeout=0.5))[0]:
                stalled.set()  # the write waits for the caller: it returns once it reads
            await write
            written += 1
        await stream.write_eof()
        done.set()
        return stream

    url = await serve(handler)
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        await asyncio.wait_for(stalled.wait(), 20)
        assert written < chunks // 2
        assert len(await response.read()) == chunks * len(chunk)
    await asyncio.wait_for(done.wait(), 10)


@pytest.fixture
async def granian() -> AsyncIterator[Serve]:
    stops: list[Callable[[], Awaitable[None]]] = []

    async def serve(handler: Handler) -> str:
        return await _granian(handler, stops)

    try:
        yield serve
    finally:
        for stop in stops:
            await stop()


async def _reading(request: Incoming, outcome: list[object]) -> Answer:
    try:
        outcome.append(await request.read_body(MAX_BODY))
    except Exception as exc:
        outcome.append(type(exc).__name__)
        raise
    return request.answer(200, {}, b"")


async def test_asgi_a_body_that_never_starts_is_a_408_that_closes(granian: Serve) -> None:
    outcome: list[object] = []
    url = await granian(lambda request: _reading_error(request, outcome))
    answer = await _exchange(
        url, b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\n"
    )  # and nothing more: the answer comes at the grace's end, and the connection closes
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 408 ") and b"connection: close" in head.split(b"\r\n")
    assert outcome == ["RequestTimeout"]


async def test_asgi_a_body_slower_than_the_rate_is_a_408(granian: Serve) -> None:
    outcome: list[object] = []
    url = await granian(lambda request: _reading_error(request, outcome))
    host, _, port = url.removeprefix("http://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n")

    async def drip() -> None:  # a byte every 20 ms: far below 1,000 bytes/s after the grace
        try:
            for _ in range(999):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.02)
        except ConnectionError:
            return

    dripping = asyncio.create_task(drip())
    answer = await asyncio.wait_for(reader.read(), 10)
    dripping.cancel()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert outcome == ["RequestTimeout"]


async def test_asgi_a_client_gone_mid_body_is_not_an_internal_error(granian: Serve) -> None:
    outcome: list[object] = []
    reading, answered = asyncio.Event(), asyncio.Event()

    async def handler(request: Incoming) -> Answer:
        reading.set()
        try:
            return await _reading_error(request, outcome)
        finally:
            answered.set()

    url = await granian(handler)
    host, _, port = url.removeprefix("http://").rpartition(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\nxx")
    await reading.wait()
    writer.close()
    await asyncio.wait_for(answered.wait(), 10)
    assert outcome == ["BadRequest"]


async def _reading_error(request: Incoming, outcome: list[object]) -> Answer:
    """Read the body; a client error becomes its answer (as the pipeline does)."""
    try:
        return await _reading(request, outcome)
    except RequestError as exc:
        return error_response(exc, "-", request.answer)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (
            {
                "proxy": {"http_server": "granian"},
                "listen": {
                    "tls": {"cert_file": "c.pem", "key_file": "k.pem", "client_ca_file": "ca.pem"},
                },
            },
            "client certificates need proxy.http_server aiohttp",
        ),
        (
            {"proxy": {"http_server": "granian", "header_timeout_s": 61}},
            "at most 60 with proxy.http_server granian",
        ),
        ({"proxy": {"http_server": "uvicorn"}}, "http_server"),
    ],
)
def test_what_granian_cannot_do_is_refused_at_start(config: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        settings_from_mapping(config)


def test_aiohttp_is_the_default_and_granian_takes_what_it_can() -> None:
    assert settings_from_mapping({}).proxy.http_server == "aiohttp"
    granian = settings_from_mapping({"proxy": {"http_server": "granian", "header_timeout_s": 60}})
    assert granian.proxy.http_server == "granian"


def test_granian_leaves_the_process_log_handlers_open(tmp_path: Path) -> None:
    """Granian configures logging as its server is built; the process's handlers stay."""
    handler = logging.FileHandler(tmp_path / "keyguard.log")
    root = logging.getLogger()
    root.addHandler(handler)
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        GranianSite(AsgiProxy(_never, ConnectionGuard(LIMITS)), sock, limits=LIMITS, backlog=128)
        assert handler in root.handlers
        assert handler.stream is not None and not handler.stream.closed
    finally:
        root.removeHandler(handler)
        handler.close()
        sock.close()


async def _never(request: Incoming) -> Answer:
    raise AssertionError("no request is sent")
