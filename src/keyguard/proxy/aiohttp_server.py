"""The incoming side of the transport seam over aiohttp's low-level server
(:mod:`keyguard.core.transport`).

The proxy port's server makes each request an :class:`AiohttpIncoming` (its request factory,
:func:`request_factory`): aiohttp's own request object with the seam's few additions, so
nothing is wrapped per request. Its answers are aiohttp's own: a whole answer is an
:class:`AiohttpWhole` (a ``web.Response``), a streamed one an :class:`AiohttpStream` (a
``web.StreamResponse``): the relay's writes are aiohttp's writes (each awaited: back-pressure),
and a client gone away raises aiohttp's ``ClientConnectionResetError``, a
``ConnectionResetError`` (the seam's ``ClientGone``). Nothing is converted on the way out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aiohttp import web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_exceptions import HTTPRequestEntityTooLarge
from aiohttp.web_protocol import RequestHandler

from ..core.transport import Answer, StreamedAnswer

__all__ = [
    "AiohttpIncoming",
    "AiohttpStream",
    "AiohttpWhole",
    "request_factory",
    "web_response",
    "whole_answer",
]


class AiohttpIncoming(web.BaseRequest):
    """aiohttp's request as the seam's :class:`~keyguard.core.transport.Incoming`. aiohttp
    refuses a body above the cap it was made with (:func:`request_factory`) as it arrives,
    with or without a ``Content-Length``."""

    def peer_certificate(self) -> bytes | None:
        transport = self.transport
        tls = transport.get_extra_info("ssl_object") if transport is not None else None
        der: bytes | None = tls.getpeercert(binary_form=True) if tls is not None else None
        return der

    async def read_body(self, limit: int) -> bytes | None:
        try:
            body = await self.read()
        except HTTPRequestEntityTooLarge:
            return None
        return None if len(body) > limit else body

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> AiohttpWhole:
        return whole_answer(status, headers, body)

    def stream(self, status: int, headers: Mapping[str, str]) -> AiohttpStream:
        return AiohttpStream(self, status, headers)


class AiohttpWhole(web.Response):
    """aiohttp's response as the seam's :class:`~keyguard.core.transport.Answer`."""

    streamed: Literal[False] = False


def whole_answer(status: int, headers: Mapping[str, str], body: bytes) -> AiohttpWhole:
    """A whole answer where no request is at hand (the server's own refusals)."""
    return AiohttpWhole(status=status, body=body, headers=headers)


class AiohttpStream(web.StreamResponse):
    """aiohttp's streamed response as the seam's
    :class:`~keyguard.core.transport.StreamedAnswer`."""

    streamed: Literal[True] = True

    def __init__(self, request: web.BaseRequest, status: int, headers: Mapping[str, str]) -> None:
        super().__init__(status=status, headers=headers)
        self._request = request

    @property
    def started(self) -> bool:
        return self.prepared

    async def start(self) -> None:
        await self.prepare(self._request)


def web_response(answer: Answer | StreamedAnswer) -> web.StreamResponse:
    """The pipeline's ``answer``, made by an :class:`AiohttpIncoming`: aiohttp's own."""
    assert isinstance(answer, web.StreamResponse)
    return answer


def request_factory(
    max_body: int,
) -> Callable[
    [RawRequestMessage, StreamReader, RequestHandler, Any, asyncio.Task[None]], AiohttpIncoming
]:
    """The proxy server's request factory: each request an :class:`AiohttpIncoming` whose
    body aiohttp reads up to ``max_body`` bytes."""

    def make(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: Any,
        task: asyncio.Task[None],
    ) -> AiohttpIncoming:
        return AiohttpIncoming(
            message,
            payload,
            protocol,
            writer,
            task,
            asyncio.get_running_loop(),
            client_max_size=max_body,
        )

    return make
