"""What crosses toward Azure, and how the gateway behaves when the upstream misbehaves.

A small recording upstream (a real aiohttp server on loopback) stands in for Azure where a test
needs to see exactly what the gateway sent, or to misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletionMessageParam

from keyguard.emulator.config import EmulatorConfig
from keyguard.proxy.headers import FORWARDED_REQUEST_HEADERS
from keyguard.server import Gateway
from tests.support.emulators import API_VERSION
from tests.support.gateway import azure_client, new_key, running_gateway
from tests.support.settings import free_port, upstream

from .harness import GatewayHarness

UPSTREAM_KEY = "0123456789abcdef0123456789abcdef"
CHAT = "/openai/deployments/gpt-4o/chat/completions?api-version=" + API_VERSION
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.behaviour: Handler = self.ok

    async def ok(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"id": "x", "object": "chat.completion", "choices": [], "usage": None},
            headers={"x-ms-region": "Test", "set-cookie": "a=b", "server": "upstream"},
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        return await self.behaviour(request)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield rec, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _gateway(tmp_path: Path, url: str, **proxy: Any) -> AsyncIterator[tuple[Gateway, str]]:
    """A gateway in front of ``url`` holding ``UPSTREAM_KEY`` for it, and a key of its own."""
    async with running_gateway(
        tmp_path, upstreams=[upstream(url)], vault={"upstream/emulator": UPSTREAM_KEY}, proxy=proxy
    ) as gw:
        _, key = await new_key(gw)
        yield gw, key


async def test_client_credentials_never_reach_the_upstream(
    tmp_path: Path, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    async with _gateway(tmp_path, url) as (gw, key):
        async with aiohttp.ClientSession() as http:
            async with http.post(
                gw.proxy_url + CHAT,
                json={"messages": MESSAGES},
                headers={
                    "api-key": key,
                    "Authorization": f"Bearer {key}",
                    "Cookie": "session=secret",
                    "X-Forwarded-For": "10.0.0.1",
                    "Host": "evil.example",
                    "Proxy-Authorization": "Basic abc",
                    "X-Ms-Client-Request-Id": "rid-1",
                    "X-Stainless-Lang": "python",
                    "X-Custom-Token": "tok",
                    "Ocp-Apim-Subscription-Key": "sub",
                    "TE": "trailers",
                    "X-Ms-Client-Principal-Name": "admin@contoso.com",
                    "X-Ms-Credential": "forged",
                    "X-Ms-Anything-Else": "x",
                    "Aoai-Anything": "x",
                    "X-Stainless-Made-Up": "x",
                    "Aoai-Evals": "preview",
                },
            ) as resp:
                assert resp.status == 200
                assert "set-cookie" not in resp.headers
                assert resp.headers["x-ms-region"] == "Test"
    method, path, headers, body = rec.requests[0]
    lower = {k.lower(): v for k, v in headers.items()}
    assert (method, path) == ("POST", CHAT)
    assert lower["api-key"] == UPSTREAM_KEY
    assert "authorization" not in lower and "cookie" not in lower
    assert "x-forwarded-for" not in lower and "proxy-authorization" not in lower
    assert "ocp-apim-subscription-key" not in lower and "x-custom-token" not in lower
    assert "te" not in lower
    assert lower["host"] == url.removeprefix("http://")
    assert lower["x-ms-client-request-id"] == "rid-1" and lower["x-stainless-lang"] == "python"
    assert lower["aoai-evals"] == "preview"
    forwarded = set(lower) - {"host", "content-length", "accept-encoding", "api-key"}
    assert forwarded <= FORWARDED_REQUEST_HEADERS, forwarded - FORWARDED_REQUEST_HEADERS
    assert key not in str(headers) and key.encode() not in body


async def test_v1_model_alias_is_rewritten_to_the_upstream_deployment(
    tmp_path: Path, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    alias = upstream(url, name="up", deployments={"chat": {"upstream_deployment": "gpt-4o-2024"}})
    async with running_gateway(
        tmp_path, upstreams=[alias], vault={"upstream/up": UPSTREAM_KEY}
    ) as gw:
        _, key = await new_key(gw)
        async with aiohttp.ClientSession() as http:
            await http.post(
                gw.proxy_url + "/openai/v1/chat/completions",
                json={"model": "chat", "messages": MESSAGES},
                headers={"api-key": key},
            )
            await http.post(
                gw.proxy_url + "/openai/deployments/chat/embeddings?api-version=" + API_VERSION,
                json={"input": "x"},
                headers={"api-key": key},
            )
    assert rec.requests[0][1] == "/openai/v1/chat/completions"
    assert b'"model":"gpt-4o-2024"' in rec.requests[0][3]
    assert rec.requests[1][1].startswith("/openai/deployments/gpt-4o-2024/embeddings")


@pytest.mark.parametrize("client", ["aiohttp", "pyreqwest"])
async def test_header_bytes_beyond_ascii_either_way_are_no_500(
    tmp_path: Path, recorder: tuple[Recorder, str], client: str
) -> None:
    """A caller's User-Agent carrying a byte that is not UTF-8, an upstream header carrying
    one: the request is answered as usual on either upstream client."""
    rec, url = recorder

    async def odd(request: web.Request) -> web.StreamResponse:
        answer = await rec.ok(request)
        answer.headers["x-ms-odd"] = "caf\u00e9"
        return answer

    rec.behaviour = odd
    async with _gateway(tmp_path, url, upstream_client=client) as (gw, key):
        host, port = gw.proxy_url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        body = b'{"messages": [{"role": "user", "content": "hi"}]}'
        writer.write(
            b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: gateway\r\napi-key: " + key.encode()
            + b"\r\nUser-Agent: sdk/1 \xff\r\nContent-Type: application/json\r\n"
            + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
            + body
        )  # fmt: skip
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert rec.requests[0][2]["User-Agent"].startswith("sdk/1")


@pytest.mark.parametrize(
    ("status", "headers"),
    [(302, {"Location": "http://169.254.169.254/"}), (401, {}), (403, {})],
)
async def test_redirects_and_upstream_auth_failures_become_502(
    tmp_path: Path, recorder: tuple[Recorder, str], status: int, headers: dict[str, str]
) -> None:
    rec, url = recorder

    async def answer(_: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"code": str(status)}}, status=status, headers=headers)

    rec.behaviour = answer
    async with _gateway(tmp_path, url) as (gw, key):
        async with aiohttp.ClientSession() as http:
            async with http.post(
                gw.proxy_url + CHAT,
                json={"messages": MESSAGES},
                headers={"api-key": key},
                allow_redirects=False,
            ) as resp:
                body = await resp.json()
                assert resp.status == 502
                assert "location" not in resp.headers
    assert len(rec.requests) == 1  # the redirect was not followed
    assert body["error"]["code"] == "BadGateway"


async def test_upstream_down_is_502(tmp_path: Path) -> None:
    async with _gateway(tmp_path, f"http://127.0.0.1:{free_port()}") as (gw, key):
        client = azure_client(gw, key)
        async with client:
            with pytest.raises(openai.APIStatusError) as info:
                await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert info.value.status_code == 502
    assert "cannot be reached" in info.value.message


async def test_upstream_too_slow_is_504(tmp_path: Path, recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    never = asyncio.Event()

    async def hang(_: web.Request) -> web.StreamResponse:
        await never.wait()
        raise AssertionError("unreachable")

    rec.behaviour = hang
    async with _gateway(tmp_path, url, upstream_timeout_s=0.3) as (gw, key):
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    gw.proxy_url + CHAT, json={"messages": MESSAGES}, headers={"api-key": key}
                ) as resp:
                    assert resp.status == 504
                    assert (await resp.json())["error"]["code"] == "GatewayTimeout"
        finally:
            never.set()


def _sse(n: int) -> list[bytes]:
    return [f'data: {{"n": {i}}}\n\n'.encode() for i in range(n)] + [b"data: [DONE]\n\n"]


async def test_stream_first_byte_is_not_buffered(
    tmp_path: Path, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    release = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        events = _sse(3)
        await resp.write(events[0])
        await release.wait()  # the rest only after the client has seen the first event
        for event in events[1:]:
            await resp.write(event)
        return resp

    rec.behaviour = stream
    async with _gateway(tmp_path, url) as (gw, key):
        async with aiohttp.ClientSession() as http:
            async with http.post(
                gw.proxy_url + CHAT,
                json={"messages": MESSAGES, "stream": True},
                headers={"api-key": key},
            ) as resp:
                first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), timeout=5)
                assert first == b'data: {"n": 0}\n\n'
                release.set()
                rest = await resp.content.read()
    assert rest.endswith(b"data: [DONE]\n\n")


async def test_upstream_breaking_mid_stream_gives_a_clean_sdk_error(
    tmp_path: Path, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder

    async def broken(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = (
            'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m",'
            '"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
        )
        await resp.write(chunk.encode())
        assert request.transport is not None
        request.transport.abort()
        return resp

    rec.behaviour = broken
    async with _gateway(tmp_path, url) as (gw, key):
        client = azure_client(gw, key)
        async with client:
            stream = await client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
            )
            got = []
            with pytest.raises(openai.APIError) as info:
                async for chunk in stream:
                    got.append(chunk)
    assert len(got) == 1
    assert "broke off" in str(info.value)


class _Waiter(logging.Handler):
    """A log handler that sets an event when a matching access-log record arrives."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen.set()


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(stream_delay=0.01)])
async def test_client_disconnect_mid_stream_is_a_clean_close(
    gateway: GatewayHarness, app_key: str
) -> None:
    waiter = _Waiter('"client_disconnected":true')
    access = logging.getLogger("keyguard.access")
    access.addHandler(waiter)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                gateway.url + CHAT,
                json={"messages": MESSAGES, "stream": True, "max_tokens": 1000},
                headers={"api-key": app_key},
            )
            assert resp.status == 200
            await resp.content.readuntil(b"\n\n")
            resp.close()  # drop the connection in the middle of a 10 s stream
        await asyncio.wait_for(waiter.seen.wait(), timeout=5)
    finally:
        access.removeHandler(waiter)
        access.setLevel(old_level)
    async with gateway.azure(app_key) as client:  # the gateway keeps serving
        reply = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.choices
