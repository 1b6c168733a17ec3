"""The upstream side of the transport seam over ``pyreqwest`` (Rust's reqwest and hyper), the
alternative to :mod:`.aiohttp_client` chosen by ``proxy.upstream_client: pyreqwest``.

:func:`new_pyreqwest_upstream` makes the pool of connections toward the upstreams with the
aiohttp client's settings: keep-alive (idle connections kept 60 s), at most ``max_connections``
requests in flight (a request beyond them waits for a slot, at most the connect timeout), a
connect timeout and a read timeout per read (so a long stream is fine while it moves), no
total timeout, no decompression, no cookies, no redirects, HTTP/1.1, and no proxy from the
environment (aiohttp does not read ``HTTPS_PROXY`` either). pyreqwest sends ``User-Agent:
python-pyreqwest/1.0.0`` when the caller sent none (aiohttp sends none); it cannot be left out.

TLS is always verified. pyreqwest's roots are the system's (rustls-platform-verifier: on Linux
the store OpenSSL would read, ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` included); an upstream's
``ca_file`` adds to them, never replaces them, as with aiohttp. The seam hands each request
the upstream's trust as an ``ssl.SSLContext`` (:mod:`keyguard.upstream.tls`); a pyreqwest
client takes its roots when it is built, so there is one client per distinct context, built
the first time it is used, with the context's CA certificates added (``get_ca_certs``: the
``ca_file`` and whatever else the context holds). Like the aiohttp adapter, no client
certificate is presented.

Answers are :class:`PyreqwestAnswer`. A body is read through pyreqwest's bounded read buffer
(``streamed_read_buffer_limit``: the upstream is not read further while it is full, so a
large stream is never held whole), chunk by chunk as it arrives.

A task cancelled while it awaits :meth:`PyreqwestUpstream.send` does not stop the request:
pyreqwest's runtime carries it on. A request still waiting for a pool slot is sent once one
frees, and its slot is held until the answer's head arrives (or the read timeout); aiohttp
drops both at once. The gateway's handlers are not cancelled when a client goes away (aiohttp's
``handler_cancellation`` is off), so this happens only at shutdown, once the drain's grace is
over. A task cancelled while it awaits a chunk gives its connection back at once.

pyreqwest's errors become the seam's: a timeout (connecting, waiting for a pool slot or
reading) is :class:`~keyguard.errors.UpstreamTimedOut`; a connection that could not be made
(refused, DNS, TLS handshake) or was lost before the answer's head
:class:`~keyguard.errors.UpstreamNotReached`; anything else
:class:`~keyguard.errors.UpstreamFailed`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator, Mapping
from datetime import timedelta
from types import TracebackType

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import NetworkError, PyreqwestError, RequestTimeoutError
from pyreqwest.http import HeaderMap
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response, ResponseBodyReader

from ..core.transport import media_type, read_capped
from ..errors import UpstreamFailed, UpstreamNotReached, UpstreamTimedOut, UpstreamTooLarge

__all__ = ["PyreqwestAnswer", "PyreqwestHeaders", "PyreqwestUpstream", "new_pyreqwest_upstream"]

#: pyreqwest's read buffer, 0: every chunk is handed over as it arrives. With pyreqwest's
#: default (65,536) ``send`` would return only once that much of the body had arrived (or all
#: of it), and later chunks would be handed over in batches of that size: a stream would reach
#: the caller at the end, or 64 KiB at a time. With 0, one chunk waits in pyreqwest's channel
#: (capacity one) and the connection is not read while it does: back-pressure.
READ_BUFFER = 0
_IDLE = timedelta(seconds=60)  # an idle pooled connection is closed after this long
_SETTLE = 0.1  # seconds left to pyreqwest's runtime after the clients are closed


class PyreqwestHeaders:
    """An answer's headers as the seam reads them (case-insensitive, names may repeat).

    pyreqwest gives a header's value as text only when it is visible ASCII, and raises
    ``ValueError`` otherwise (an upstream may send obs-text: bytes beyond ASCII, UTF-8 or
    not); such a header is left out, as if it had not been sent, rather than failing the
    request with a 500."""

    __slots__ = ("_map",)

    def __init__(self, headers: HeaderMap) -> None:
        self._map = headers

    def get(self, key: str, /) -> str | None:
        try:
            return self._map.get(key)
        except ValueError:  # not visible ASCII: left out
            return None

    def getall(self, key: str, default: tuple[()], /) -> list[str] | tuple[()]:
        try:
            return self._map.getall(key) or default
        except ValueError:
            return default

    def items(self) -> Iterator[tuple[str, str]]:
        try:
            return iter(list(self._map.items()))  # read now: a value that fails, fails here
        except ValueError:
            return iter(_readable(self._map))

    def __contains__(self, key: object, /) -> bool:
        return key in self._map


def _readable(headers: HeaderMap) -> list[tuple[str, str]]:
    """The headers whose values pyreqwest can give as text (name by name)."""
    out: list[tuple[str, str]] = []
    for name in dict.fromkeys(headers.keys()):
        try:
            values = headers.getall(name)
        except ValueError:
            continue
        out.extend((name, value) for value in values)
    return out


def _length(headers: PyreqwestHeaders) -> int | None:
    """The body's length said by ``Content-Length`` (``None``: absent, not a number, or
    overridden by a ``Transfer-Encoding``, which hyper follows while the header stays: the
    body is then read chunk by chunk under the cap)."""
    value = headers.get("content-length")
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    if "transfer-encoding" in headers:  # whatever its value (one hyper cannot show as text)
        return None
    return int(value)


def _failure(exc: PyreqwestError) -> UpstreamFailed:
    """A body's read error as the seam's."""
    if isinstance(exc, RequestTimeoutError):
        return UpstreamTimedOut(type(exc).__name__)
    return UpstreamFailed(type(exc).__name__)


def _sendable(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The headers as pyreqwest takes them: a list (a name may repeat, a multidict's items)
    of values it can encode. aiohttp's server hands a byte that is not UTF-8 (a caller's
    ``User-Agent`` may carry one) on as a lone surrogate, which pyreqwest refuses with a
    ``ValueError``; such a value is sent with ``?`` in its place (aiohttp's client sends the
    byte as it came)."""
    out = list(headers.items())
    for i, (name, value) in enumerate(out):
        if not value.isascii():
            out[i] = (name, value.encode("utf-8", "replace").decode("utf-8"))
    return out


class PyreqwestAnswer:
    """pyreqwest's streamed response as the seam's
    :class:`~keyguard.core.transport.UpstreamAnswer`."""

    __slots__ = ("_request", "_reader", "status", "headers", "content_type")

    def __init__(self, request: StreamRequest, response: Response) -> None:
        self._request: StreamRequest | None = request
        self._reader: ResponseBodyReader | None = response.body_reader
        self.status = response.status
        self.headers = headers = PyreqwestHeaders(response.headers)
        self.content_type = media_type(headers.get("content-type"))

    async def read_all(self, limit: int) -> bytes:
        reader = self._reader
        if reader is None:
            raise UpstreamFailed("closed")
        length = _length(self.headers)
        if length is None:  # chunked, or to the connection's close
            return await read_capped(self.read_chunk, limit)
        if length > limit:
            raise UpstreamTooLarge("length")
        try:  # exactly ``length`` bytes (hyper holds the upstream to its Content-Length)
            return bytes(await reader.bytes())
        except PyreqwestError as exc:
            raise _failure(exc) from exc

    async def read_chunk(self) -> bytes:
        reader = self._reader
        if reader is None:
            return b""
        try:
            chunk = await reader.read_chunk()
        except PyreqwestError as exc:
            raise _failure(exc) from exc
        return b"" if chunk is None else bytes(chunk)

    def close(self) -> None:
        # pyreqwest's objects are dropped at once (reference counting): hyper drops a
        # connection whose body was not read to its end, and the request's slot is freed
        self._reader = None
        self._request = None

    def release(self) -> None:
        self.close()  # the body is unread: the connection cannot be reused (aiohttp's too)

    async def __aenter__(self) -> PyreqwestAnswer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        request, self._request, self._reader = self._request, None, None
        if request is not None:
            try:
                await request.__aexit__(None, None, None)  # a body read to its end: pooled
            except PyreqwestError:
                pass  # the connection is gone already; nothing to give back


class PyreqwestUpstream:
    """pyreqwest clients (one per trust, see the module docstring) as the seam's
    :class:`~keyguard.core.transport.UpstreamClient`."""

    __slots__ = ("_settings", "_clients")

    def __init__(self, *, connect_timeout: float, read_timeout: float, max_connections: int):
        self._settings = (connect_timeout, read_timeout, max_connections)
        self._clients: dict[ssl.SSLContext | bool, Client] = {}

    def _client(self, tls: ssl.SSLContext | bool) -> Client:
        client = self._clients.get(tls)
        if client is None:
            client = self._clients[tls] = self._build(tls)
        return client

    def _build(self, tls: ssl.SSLContext | bool) -> Client:
        connect, read, limit = self._settings
        builder = (
            ClientBuilder()
            .max_connections(limit)
            .pool_timeout(timedelta(seconds=connect))
            .pool_max_idle_per_host(limit)
            .pool_idle_timeout(_IDLE)
            .connect_timeout(timedelta(seconds=connect))
            .read_timeout(timedelta(seconds=read))
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .follow_redirects(False)
            .no_proxy()
            .http1_only()
        )
        if tls is False:  # the seam's "no verification": never configured (upstream/tls.py)
            builder = builder.danger_accept_invalid_certs(True)
        elif isinstance(tls, ssl.SSLContext):
            for der in tls.get_ca_certs(binary_form=True):
                builder = builder.add_root_certificate_der(der)
        return builder.build()

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        tls: ssl.SSLContext | bool,
    ) -> PyreqwestAnswer:
        try:
            request = (
                self._client(tls)
                .request(method, url)
                .headers(_sendable(headers))
                .body_bytes(body)
                .streamed_read_buffer_limit(READ_BUFFER)
                .build_streamed()
            )
            response = await request.__aenter__()
        except RequestTimeoutError as exc:
            raise UpstreamTimedOut(type(exc).__name__) from exc
        except NetworkError as exc:
            raise UpstreamNotReached(type(exc).__name__) from exc
        except PyreqwestError as exc:
            raise UpstreamFailed(type(exc).__name__) from exc
        return PyreqwestAnswer(request, response)

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()
        if clients:
            # pyreqwest's runtime thread still drops the TLS connections after close() has
            # returned; a process that exits meanwhile aborts ("PyGILState_Release": 4 of 10
            # and 9 of 12 exits right after a TLS request; none of 42 with 10-300 ms to spare)
            await asyncio.sleep(_SETTLE)


def new_pyreqwest_upstream(
    *, connect_timeout: float, read_timeout: float, max_connections: int
) -> PyreqwestUpstream:
    return PyreqwestUpstream(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_connections=max_connections,
    )
