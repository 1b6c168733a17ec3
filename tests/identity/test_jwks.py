"""The JWKS cache: rate-limited refreshes, floods of unknown kids, failures, bad answers."""

from __future__ import annotations

import asyncio
import gzip
import inspect
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from keyguard.emulator.tls import ensure_certificates, server_ssl_context
from keyguard.errors import UpstreamError
from keyguard.identity.jwks import MAX_JWKS_BYTES, JwksCache, JwksError, ssl_context
from keyguard.identity.settings import EntraSettings
from tests.support.clock import FakeClock
from tests.support.issuer import LocalIssuer


def cache_for(issuer: LocalIssuer, clock: FakeClock, **kw: float) -> JwksCache:
    return JwksCache(
        issuer.jwks_uri,
        algorithms=["RS256", "ES256"],
        ssl=ssl_context(str(issuer.ca_file)),
        clock=clock,
        **kw,
    )


async def test_keys_for_allowed_algorithms_only(issuer: LocalIssuer) -> None:
    cache = cache_for(issuer, FakeClock())
    try:
        await cache.start()
        assert cache.kids == {"rsa-1", "ec-1"}  # never the symmetric "oct" key
        assert await cache.get("hmac-1") is None
    finally:
        await cache.close()
    rsa_only = JwksCache(
        issuer.jwks_uri, algorithms=["RS256"], ssl=ssl_context(str(issuer.ca_file))
    )
    try:
        await rsa_only.start()
        assert rsa_only.kids == {"rsa-1"}
    finally:
        await rsa_only.close()


async def test_a_flood_of_unknown_kids_costs_one_fetch_per_interval(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    cache = cache_for(issuer, clock, min_refresh_interval=30)
    try:
        await cache.start()
        assert issuer.fetches == 1
        clock.now += 31
        found = await asyncio.gather(*(cache.get(f"made-up-{i}") for i in range(500)))
        assert found == [None] * 500
        assert issuer.fetches == 2  # one shared fetch for the whole burst
        for i in range(500):
            assert await cache.get(f"more-{i}") is None
        assert issuer.fetches == 2
        assert await cache.get("x" * 1000) is None  # absurd kids never trigger a fetch
        assert await cache.get("rsa-1") is not None
    finally:
        await cache.close()


async def test_issuer_down_then_back(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    issuer.fail = True
    cache = cache_for(issuer, clock, min_refresh_interval=10)
    try:
        await cache.start()  # logged, not raised
        with pytest.raises(UpstreamError) as info:
            await cache.get("rsa-1")
        assert info.value.status == 503 and info.value.reason == "jwks_unavailable"
        issuer.fail = False
        with pytest.raises(UpstreamError):
            await cache.get("rsa-1")  # within the interval: no new attempt
        clock.now += 10
        assert await cache.get("rsa-1") is not None
        issuer.fail = True
        clock.now += 10
        assert await cache.get("unknown") is None  # a failed refresh keeps the known keys
        assert await cache.get("rsa-1") is not None
    finally:
        await cache.close()


async def test_old_keys_are_refreshed_in_the_background(issuer: LocalIssuer) -> None:
    clock = FakeClock()
    cache = cache_for(issuer, clock, max_age=100)
    try:
        await cache.start()
        clock.now += 101
        assert await cache.get("rsa-1") is not None  # served at once, refreshed behind
        assert cache._background is not None
        await cache._background
        assert issuer.fetches == 2
    finally:
        await cache.close()


async def test_the_ca_must_be_trusted(issuer: LocalIssuer) -> None:
    cache = JwksCache(issuer.jwks_uri, algorithms=["RS256"], ssl=ssl_context(None))
    try:
        with pytest.raises(JwksError):
            await cache.refresh()
    finally:
        await cache.close()


def test_plain_http_is_refused_in_settings() -> None:
    with pytest.raises(ValidationError, match="https"):
        EntraSettings(
            tenants=["72f988bf-86f1-41af-91ab-2d7cd011db47"],
            audiences=["a"],
            jwks_uri="http://127.0.0.1/keys",
        )


Handler = Callable[[web.Request], web.StreamResponse | Awaitable[web.StreamResponse]]


@pytest.fixture
async def odd_server(tmp_path: Path) -> AsyncIterator[tuple[str, str, dict[str, Handler]]]:
    tls = ensure_certificates(tmp_path / "tls", ["127.0.0.1"])
    routes: dict[str, Handler] = {}

    async def dispatch(request: web.Request) -> web.StreamResponse:
        answer = routes[request.match_info["name"]](request)
        return await answer if inspect.isawaitable(answer) else answer

    app = web.Application()
    app.router.add_get("/{name}", dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(tls))
    await site.start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield url, str(tls.ca_cert), routes
    finally:
        await runner.cleanup()


async def _unsized(request: web.Request) -> web.StreamResponse:
    """A JSON answer without a Content-Length (chunked), larger than the limit."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    for _ in range(MAX_JWKS_BYTES // 4096 + 2):
        await resp.write(b" " * 4096)
    return resp


def _gzip_bomb(request: web.Request) -> web.Response:
    """64 MiB of JSON whitespace in 64 KiB of gzip, sent although identity was asked for."""
    body = gzip.compress(b" " * (64 * 1024 * 1024), compresslevel=9)
    return web.Response(
        body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )


def _json_body(body: bytes) -> Handler:
    return lambda r: web.Response(body=body, content_type="application/json")


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (lambda r: web.Response(status=500), "HTTP 500"),
        (
            lambda r: web.Response(status=302, headers={"Location": "https://example.com/"}),
            "HTTP 302",
        ),
        (_json_body(b"{not json"), "not JSON"),
        (lambda r: web.json_response([1, 2]), "no 'keys' list"),
        (lambda r: web.json_response({"keys": {"kid": "x"}}), "no 'keys' list"),
        (lambda r: web.json_response({"keys": []}), "no usable signing key"),
        (
            lambda r: web.json_response({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}),
            "no usable signing key .*kid 'h' .*symmetric",
        ),
        (_json_body(b" " * (MAX_JWKS_BYTES + 1)), "too large"),
        (_unsized, "too large"),
        (lambda r: web.Response(text="{}", content_type="text/html"), "content type 'text/html'"),
        (lambda r: web.Response(body=b"{}"), "content type 'application/octet-stream'"),
        (_gzip_bomb, "compressed"),
    ],
)
async def test_bad_answers(
    odd_server: tuple[str, str, dict[str, Handler]], handler: Handler, error: str
) -> None:
    url, ca, routes = odd_server
    routes["keys"] = handler
    cache = JwksCache(f"{url}/keys", algorithms=["RS256"], ssl=ssl_context(ca))
    try:
        with pytest.raises(JwksError, match=error):
            await cache.refresh()
    finally:
        await cache.close()


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/jwk-set+json"],
)
async def test_json_content_types_are_accepted(
    odd_server: tuple[str, str, dict[str, Handler]], issuer: LocalIssuer, content_type: str
) -> None:
    url, ca, routes = odd_server
    body = orjson.dumps(issuer.jwks())
    routes["keys"] = lambda r: web.Response(body=body, headers={"Content-Type": content_type})
    cache = JwksCache(f"{url}/keys", algorithms=["RS256"], ssl=ssl_context(ca))
    try:
        await cache.refresh()
        assert cache.kids == {"rsa-1"}
    finally:
        await cache.close()


PAUSE_S = 0.2  # between two segments; a client that stops reading ends it at once


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_in_several_segments_with_pauses_is_read_whole(
    tmp_path: Path, issuer: LocalIssuer, chunked: bool
) -> None:
    """The body arrives in four TLS writes with pauses between them: the cache reads to the
    end of the answer, not just what has arrived when it first looks."""
    tls = ensure_certificates(tmp_path / "tls", ["127.0.0.1"])
    body = orjson.dumps(issuer.jwks())
    cut = [0, 1, len(body) // 3, len(body) - 2, len(body)]
    parts = [body[a:b] for a, b in itertools.pairwise(cut)]
    stopped_early = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%s\r\n\r\n" % framing)
        for part in parts:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            await writer.drain()
            if part is not parts[-1]:
                try:  # the pause; a client that gave up and closed ends it at once
                    if await asyncio.wait_for(reader.read(1), PAUSE_S) == b"":
                        stopped_early.set()
                        return
                except TimeoutError:
                    pass
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ssl_context(tls))
    port = server.sockets[0].getsockname()[1]
    cache = JwksCache(
        f"https://127.0.0.1:{port}/keys", algorithms=["RS256"], ssl=ssl_context(str(tls.ca_cert))
    )
    try:
        await cache.refresh()
        assert cache.kids == {"rsa-1"} and not stopped_early.is_set()
    finally:
        await cache.close()
        server.close()
        await server.wait_closed()
