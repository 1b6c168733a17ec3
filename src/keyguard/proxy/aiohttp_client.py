"""The upstream side of the transport seam over aiohttp's client (:mod:`keyguard.core.transport`).

:func:`new_upstream_session` makes the pool of connections toward the upstreams: keep-alive,
a connect timeout and a read timeout (per read, so a long stream is fine while it moves), no
decompression (the gateway asks for none), no cookies, no default ``User-Agent``. Its answers
are :class:`AiohttpAnswer`: aiohttp's own response object with the seam's two reads, so the
relay's chunk loop awaits aiohttp's read directly, through one frame as ``iter_any`` had.

aiohttp's errors become the seam's: a timeout (connecting or reading) is
:class:`~keyguard.errors.UpstreamTimedOut`; a connection refused or closed before the answer
:class:`~keyguard.errors.UpstreamNotReached`; any other client error
:class:`~keyguard.errors.UpstreamFailed`.
"""

from __future__ import annotations

import io
import ssl
from collections.abc import Mapping

import aiohttp
from aiohttp.streams import EofStream

from ..core.transport import read_capped
from ..errors import UpstreamFailed, UpstreamNotReached, UpstreamTimedOut, UpstreamTooLarge

__all__ = ["AiohttpAnswer", "AiohttpUpstream", "new_upstream_session"]

_ONE_PIECE = 1 << 20  # bytes of body written upstream in one piece, at most


class AiohttpAnswer(aiohttp.ClientResponse):
    """aiohttp's response as the seam's :class:`~keyguard.core.transport.UpstreamAnswer`."""

    async def read_all(self, limit: int) -> bytes:
        length = self.content_length
        if length is None:  # chunked, or to the connection's close
            return await read_capped(self.read_chunk, limit)
        if length > limit:
            raise UpstreamTooLarge("length")
        try:
            return await self.read()  # exactly ``length`` bytes
        except TimeoutError as exc:
            raise UpstreamTimedOut(type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamFailed(type(exc).__name__) from exc

    async def read_chunk(self) -> bytes:
        try:
            return await self.content.readany()
        except EofStream:
            return b""
        except TimeoutError as exc:
            raise UpstreamTimedOut(type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamFailed(type(exc).__name__) from exc


class AiohttpUpstream:
    """An ``aiohttp.ClientSession`` as the seam's
    :class:`~keyguard.core.transport.UpstreamClient`."""

    __slots__ = ("session",)

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        tls: ssl.SSLContext | bool,
    ) -> AiohttpAnswer:
        try:
            answer = await self.session.request(
                method,
                url,
                # a large body is streamed from a buffer in chunks, not written in one piece
                # (aiohttp warns that one write of more than 1 MiB may hold the event loop)
                data=body if len(body) <= _ONE_PIECE else io.BytesIO(body),
                headers=headers,
                allow_redirects=False,
                ssl=tls,
            )
        except TimeoutError as exc:
            raise UpstreamTimedOut(type(exc).__name__) from exc
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            raise UpstreamNotReached(type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamFailed(type(exc).__name__) from exc
        assert isinstance(answer, AiohttpAnswer)  # the session's response class
        return answer

    async def close(self) -> None:
        await self.session.close()


def new_upstream_session(
    *, connect_timeout: float, read_timeout: float, max_connections: int
) -> AiohttpUpstream:
    return AiohttpUpstream(
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=max_connections, keepalive_timeout=60, ttl_dns_cache=300
            ),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=connect_timeout, sock_read=read_timeout
            ),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            cookie_jar=aiohttp.DummyCookieJar(),
            response_class=AiohttpAnswer,
        )
    )
