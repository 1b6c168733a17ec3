"""The upstream side of the transport seam, over real sockets: the clients are what
:mod:`keyguard.core.transport` declares (mypy checks the assignments below), and they behave as
it says: the upstream's answer read whole or as it arrives, and the client's errors as the
seam's three. The tests run on both upstream clients (``proxy.upstream_client``: aiohttp and
pyreqwest). The incoming side (aiohttp's server and the ASGI adapter on Granian) is
tests/proxy/test_transport_server.py's."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from multidict import CIMultiDict

from keyguard.core.transport import (
    Headers,
    UpstreamAnswer,
    UpstreamClient,
)
from keyguard.emulator import RunningEmulator
from keyguard.errors import UpstreamFailed, UpstreamNotReached, UpstreamTimedOut, UpstreamTooLarge
from keyguard.proxy.aiohttp_client import AiohttpAnswer, AiohttpUpstream, new_upstream_session
from keyguard.proxy.pyreqwest_client import (
    PyreqwestAnswer,
    PyreqwestHeaders,
    PyreqwestUpstream,
    new_pyreqwest_upstream,
)
from keyguard.upstream.tls import trust

_UPSTREAM_ANSWER: type[UpstreamAnswer] = AiohttpAnswer
_UPSTREAM: type[UpstreamClient] = AiohttpUpstream
_PYREQWEST_ANSWER: type[UpstreamAnswer] = PyreqwestAnswer
_PYREQWEST_HEADERS: type[Headers] = PyreqwestHeaders
_PYREQWEST: type[UpstreamClient] = PyreqwestUpstream
CLIENTS: dict[str, Callable[..., UpstreamClient]] = {
    "aiohttp": new_upstream_session,
    "pyreqwest": new_pyreqwest_upstream,
}
#: how each client names a body the upstream broke off
BROKEN_BODY = {"aiohttp": "ClientPayloadError", "pyreqwest": "RequestError"}

LIMIT = 1 << 20  # proxy.max_answer_bytes in these tests
# These tests break connections off on purpose (stalls, cancellations, refused handshakes):
# a socket of the test's own servers may be collected after the test that made it, and its
# unclosed-socket warning would fail whichever test runs then. What the clients give back is
# asserted directly (the slot tests), not through warnings.
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
GZIPPED = gzip.compress(b"not to be decompressed")
LARGE_CHUNKS = 1024  # 64 MiB in all: far beyond what the sockets' buffers hold
written_by_large: list[int] = []  # the bytes the upstream's /large has written so far


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An upstream with a JSON answer, a stream paced by the test, one that never answers,
    and one that breaks off its body."""
    read_first = asyncio.Event()
    never = asyncio.Event()

    async def json_answer(request: web.Request) -> web.Response:
        return web.json_response({"echo": (await request.read()).decode()})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        await read_first.wait()  # the client has read the first chunk: nothing is held
        await response.write(b"data: 2\n\n")
        await response.write_eof()
        return response

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        raise AssertionError("unreachable")

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"0123456789")
        assert request.transport is not None
        request.transport.close()
        return response

    async def compressed(request: web.Request) -> web.Response:
        response = web.Response(
            body=GZIPPED,
            headers={"Content-Type": "text/plain", "Content-Encoding": "gzip", "X-Multi": "a"},
        )
        response.headers.add("x-multi", "b")
        response.headers["X-Sent-Test"] = ",".join(request.headers.getall("X-Test", []))
        return response

    async def large(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(LARGE_CHUNKS):
            await response.write(b"x" * 65536)  # waits while the client's buffers are full
            written_by_large.append(65536)
        await response.write_eof()
        return response

    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        await never.wait()  # then silence, the connection open
        raise AssertionError("unreachable")

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"s" * (2 * LIMIT), content_type="application/json")

    app = web.Application()
    app.router.add_get("/sized", sized)
    app.router.add_get("/stall", stall)
    app.router.add_post("/json", json_answer)
    app.router.add_get("/compressed", compressed)
    app.router.add_get("/large", large)
    app.router.add_get("/stream", stream)
    app.router.add_get("/hang", hang)
    app.router.add_get("/cut", cut)
    # the shutdown waits for the handlers released below to end and close their connections
    # (0.1 s was too short on a loaded machine: a connection left to the garbage collector
    # raised an unclosed-transport warning in the next test)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    written_by_large.clear()
    try:
        yield f"http://{host}:{port}", read_first
    finally:
        never.set()
        await runner.cleanup()


@pytest.fixture(params=sorted(CLIENTS))
def client_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def client(client_name: str) -> AsyncIterator[UpstreamClient]:
    session = CLIENTS[client_name](connect_timeout=2, read_timeout=0.3, max_connections=4)
    try:
        yield session
    finally:
        await session.close()


async def test_the_upstream_answer_is_read_whole(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient
) -> None:
    url, _ = upstream
    answer = await client.send("POST", url + "/json", {"X-Test": "1"}, b"hello", True)
    async with answer:
        assert answer.status == 200 and answer.content_type == "application/json"
        assert answer.headers.get("content-type") == "application/json; charset=utf-8"
        assert await answer.read_all(LIMIT) == b'{"echo": "hello"}'


async def test_an_answer_is_read_whole_up_to_the_cap_and_not_a_byte_more(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient
) -> None:
    url, _ = upstream
    expected = b'{"echo": "hello"}'
    answer = await client.send("POST", url + "/json", {}, b"hello", True)
    async with answer:
        assert await answer.read_all(len(expected)) == expected
    answer = await client.send("POST", url + "/json", {}, b"hello", True)
    async with answer:
        with pytest.raises(UpstreamTooLarge):
            await answer.read_all(len(expected) - 1)


async def test_an_answer_whose_length_is_above_the_cap_is_refused_unread(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient
) -> None:
    url, _ = upstream
    answer = await client.send("GET", url + "/sized", {}, b"", True)
    async with answer:
        with pytest.raises(UpstreamTooLarge) as caught:
            await answer.read_all(LIMIT)
    assert caught.value.cause == "length"


async def test_an_answer_without_a_length_stops_being_read_at_the_cap(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient
) -> None:
    url, _ = upstream
    answer = await client.send("GET", url + "/large", {}, b"", True)  # 64 MiB, chunked
    async with answer:
        with pytest.raises(UpstreamTooLarge) as caught:
            await answer.read_all(LIMIT)
    assert caught.value.cause == "body"
    # the reading stopped: what the upstream could write is what the buffers held
    assert sum(written_by_large) < 16 * LIMIT


async def test_a_length_contradicted_by_chunked_encoding_does_not_lift_the_cap(
    client: UpstreamClient,
) -> None:
    # A hostile upstream says Content-Length: 10 and sends its body chunked (which wins, as
    # HTTP says): the small length must not let the body be read whole past the cap.
    written: list[int] = []

    async def answer_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            piece = b"10000\r\n" + b"x" * 65536 + b"\r\n"
            for _ in range(LARGE_CHUNKS):
                writer.write(piece)
                await writer.drain()  # waits while the client's buffers are full
                written.append(65536)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except OSError:
            pass  # the client hung up: what this test wants
        finally:
            writer.close()

    server = await asyncio.start_server(answer_chunked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(UpstreamFailed):  # too large, or refused as malformed (aiohttp)
            answer = await client.send("GET", f"http://127.0.0.1:{port}/", {}, b"", True)
            async with answer:
                await answer.read_all(LIMIT)
        assert sum(written) < 16 * LIMIT
    finally:
        server.close()


async def test_the_upstream_stream_is_read_as_it_arrives(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient
) -> None:
    url, read_first = upstream
    answer = await client.send("GET", url + "/stream", {}, b"", True)
    async with answer:
        assert answer.content_type == "text/event-stream"
        assert await answer.read_chunk() == b"data: 1\n\n"
        read_first.set()
        rest = b""
        while chunk := await answer.read_chunk():
            rest += chunk
        assert rest == b"data: 2\n\n"
        assert await answer.read_chunk() == b""


async def test_an_upstream_too_slow_is_a_timeout(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient
) -> None:
    url, _ = upstream
    with pytest.raises(UpstreamTimedOut):
        await client.send("GET", url + "/hang", {}, b"", True)


async def test_an_upstream_body_broken_off_is_a_failure(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient, client_name: str
) -> None:
    url, _ = upstream
    answer = await client.send("GET", url + "/cut", {}, b"", True)
    async with answer:
        with pytest.raises(UpstreamFailed) as caught:
            await answer.read_all(LIMIT)
    assert not isinstance(caught.value, UpstreamTimedOut | UpstreamNotReached)
    assert caught.value.cause == BROKEN_BODY[client_name]


async def test_a_stream_broken_off_is_a_failure_read_by_read(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient, client_name: str
) -> None:
    url, _ = upstream
    answer = await client.send("GET", url + "/cut", {}, b"", True)
    async with answer:
        received = b""
        with pytest.raises(UpstreamFailed) as caught:
            while chunk := await answer.read_chunk():
                received += chunk
    assert received == b"0123456789"
    assert caught.value.cause == BROKEN_BODY[client_name]


async def test_an_upstream_nobody_listens_on_is_not_reached(client: UpstreamClient) -> None:
    with socket.socket() as sock:  # a port just freed: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamNotReached):
        await client.send("GET", f"http://127.0.0.1:{port}/", {}, b"", True)


async def test_the_answer_headers_repeat_and_read_case_insensitively_and_nothing_is_decompressed(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient
) -> None:
    url, _ = upstream
    sent = CIMultiDict([("X-Test", "1"), ("Accept-Encoding", "identity")])  # as the relay's
    answer = await client.send("GET", url + "/compressed", sent, b"", True)
    async with answer:
        headers = answer.headers
        assert headers.getall("X-MULTI", ()) == ["a", "b"]
        assert headers.getall("x-absent", ()) == ()
        assert headers.get("content-encoding") == "gzip" and "CONTENT-ENCODING" in headers
        assert [v for k, v in headers.items() if k.lower() == "x-multi"] == ["a", "b"]
        assert headers.get("x-sent-test") == "1"
        assert answer.content_type == "text/plain"
        assert await answer.read_all(LIMIT) == GZIPPED  # as the upstream sent it


async def test_a_header_value_carrying_bytes_that_are_not_utf8_is_sent(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient
) -> None:
    # aiohttp's server hands such a byte on as a lone surrogate (``surrogateescape``): a
    # caller's User-Agent may carry one, and the relay forwards it
    url, _ = upstream
    sent = CIMultiDict([("X-Test", "ab\udcffcd"), ("User-Agent", "sdk/1 caf\u00e9")])
    answer = await client.send("GET", url + "/compressed", sent, b"", True)
    async with answer:
        assert answer.status == 200
        echoed = answer.headers.get("x-sent-test")
        assert echoed is not None and echoed.startswith("ab") and echoed.endswith("cd")
        assert await answer.read_all(LIMIT) == GZIPPED


async def test_a_large_stream_is_read_as_it_arrives_never_whole(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient
) -> None:
    url, _ = upstream
    answer = await client.send("GET", url + "/large", {}, b"", True)
    async with answer:
        first = await answer.read_chunk()
        assert first
        # nothing more is read: the upstream's writes stop once the buffers are full, far
        # short of the whole stream
        for _ in range(200):
            before = len(written_by_large)
            await asyncio.sleep(0.005)
            if len(written_by_large) == before:
                break
        assert sum(written_by_large) < LARGE_CHUNKS * 65536 // 4
        answer.close()  # the rest is never read


async def test_answers_closed_or_released_unread_give_their_slot_back(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient
) -> None:
    url, _ = upstream
    for i in range(6):  # more than the client's 4 connections
        answer = await asyncio.wait_for(client.send("GET", url + "/large", {}, b"", True), 5)
        async with answer:
            assert await answer.read_chunk()
            answer.close() if i % 2 else answer.release()
    answer = await asyncio.wait_for(client.send("POST", url + "/json", {}, b"x", True), 5)
    async with answer:
        assert await answer.read_all(LIMIT) == b'{"echo": "x"}'


async def test_tls_is_verified_against_the_upstream_ca_file(
    tls_emulator: RunningEmulator, client: UpstreamClient
) -> None:
    assert tls_emulator.ca_file is not None
    url = tls_emulator.url + "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    with pytest.raises(UpstreamNotReached):  # the system store alone does not know its CA
        await client.send("POST", url, {}, b"{}", True)
    answer = await client.send("POST", url, {}, b"{}", trust(str(tls_emulator.ca_file)))
    async with answer:
        assert answer.status == 401  # through TLS; no key sent
        await answer.read_all(LIMIT)


async def test_an_upstream_silent_in_the_middle_of_a_stream_is_a_timeout(
    upstream: tuple[str, asyncio.Event], client: UpstreamClient
) -> None:
    url, _ = upstream
    answer = await client.send("GET", url + "/stall", {}, b"", True)
    async with answer:
        assert await answer.read_chunk() == b"data: 1\n\n"
        with pytest.raises(UpstreamTimedOut):
            await answer.read_chunk()


async def test_an_answer_header_carrying_bytes_beyond_ascii_is_readable_or_left_out(
    client: UpstreamClient, client_name: str
) -> None:
    # an upstream may send a header value that is not visible ASCII (obs-text): reading the
    # headers must not raise (the relay would answer a 500)
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Odd: ab\xffcd\r\n"
            b"X-Utf8: caf\xc3\xa9\r\nX-Plain: 1\r\nContent-Length: 2\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        upstream = await client.send("GET", f"http://127.0.0.1:{port}/", {}, b"", True)
        async with upstream:
            headers = upstream.headers
            assert upstream.status == 200 and upstream.content_type == "application/json"
            assert headers.get("x-plain") == "1" and headers.getall("X-Plain", ()) == ["1"]
            names = {name.lower() for name, _ in headers.items()}
            assert {"content-type", "x-plain"} <= names
            if client_name == "pyreqwest":  # it reads visible ASCII only: the others left out
                assert headers.get("x-odd") is None and "x-odd" not in names
                assert headers.getall("x-utf8", ()) == ()
            assert await upstream.read_all(LIMIT) == b"{}"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_read_cancelled_mid_stream_gives_the_slot_back(
    upstream: tuple[str, asyncio.Event], client_name: str
) -> None:
    # a handler cancelled while it awaits the next chunk (a shutdown's grace running out)
    # leaves through the answer's ``async with``: the one connection this client may hold is
    # free for the next request
    url, _ = upstream
    client = CLIENTS[client_name](connect_timeout=2, read_timeout=30, max_connections=1)
    reading = asyncio.Event()

    async def relay() -> None:
        answer = await client.send("GET", url + "/stall", {}, b"", True)
        async with answer:
            assert await answer.read_chunk() == b"data: 1\n\n"
            reading.set()
            await answer.read_chunk()  # the upstream stays silent: cancelled here

    try:
        task = asyncio.create_task(relay())
        await asyncio.wait_for(reading.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        answer = await asyncio.wait_for(client.send("POST", url + "/json", {}, b"x", True), 5)
        async with answer:
            assert await answer.read_all(LIMIT) == b'{"echo": "x"}'
    finally:
        await client.close()
