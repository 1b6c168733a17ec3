"""Raw-socket helpers for the connection tests: open from a chosen source address, send a
request by hand, read an answer, read until the server closes the connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import httpx2
import openai
import orjson
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from tests.support.emulators import API_VERSION

CHAT = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
HALF = b"POST /openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21 HTTP/1.1\r\nHo"
BODY = orjson.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
SLACK = 0.1  # a timer may fire this much before the deadline seen from the client

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def opened(url: str, local: str = "127.0.0.1") -> Conn:
    u = URL(url)
    assert u.host is not None and u.port is not None
    return await asyncio.open_connection(u.host, u.port, local_addr=(local, 0))


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent before it closed the connection."""
    chunks = []
    try:
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def error_code(answer: bytes) -> str:
    body = orjson.loads(answer.partition(b"\r\n\r\n")[2])
    return str(body["error"]["code"])


def request(key: str, body: bytes = BODY, length: int | None = None, path: str = CHAT) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\napi-key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length or len(body)}\r\n\r\n"
    ).encode() + body


async def answer_of(reader: asyncio.StreamReader) -> bytes:
    """One whole answer with a Content-Length from a connection that stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


def sdk(url: str, key: str, local: str = "127.0.0.1") -> openai.AsyncAzureOpenAI:
    """The SDK with its default HTTP client, bound to the source address ``local``."""
    transport = httpx2.AsyncHTTPTransport(local_address=local)
    return openai.AsyncAzureOpenAI(
        azure_endpoint=url,
        api_key=key,
        api_version=API_VERSION,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(transport=transport),
    )


async def chat(url: str, key: str, local: str = "127.0.0.1", model: str = "gpt-4o") -> str | None:
    """One chat completion through the SDK from ``local``; its answer."""
    async with sdk(url, key, local) as client:
        reply = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
    return reply.choices[0].message.content


async def metric(admin_url: str, name: str) -> float:
    """The value of an unlabelled metric on the admin port's ``/metrics``."""
    async with aiohttp.ClientSession() as http:
        async with http.get(admin_url + "/metrics") as resp:
            text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} is not among the metrics")
