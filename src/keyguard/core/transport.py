"""The transport seam: what the proxy's request pipeline needs of an HTTP stack, and no more.

The pipeline (``proxy/app.py``, ``proxy/relay.py`` and the modules they call) is written
against these small interfaces, never against a stack's own types; an adapter module per side
makes a stack fit them (``proxy/aiohttp_server.py`` for the incoming side,
``proxy/aiohttp_client.py`` for the upstream side), so another stack needs only new adapters.

* :class:`Incoming` -- one client request: method, path and query as sent, case-insensitive
  headers, content length and type, the peer's address and verified client certificate, the
  body read under a size cap, and the answer to it: :meth:`Incoming.answer` (whole) or
  :meth:`Incoming.stream` (sent as it is made).
* :class:`Answer` -- a whole answer (status, headers, body), made by :meth:`Incoming.answer`
  as the stack's own answer object, so nothing is converted on the way out. ``streamed`` tells
  the two kinds of answer apart (``False`` here, ``True`` for a :class:`StreamedAnswer`).
* :class:`StreamedAnswer` -- an answer written chunk by chunk; each ``write`` returns once the
  stack has taken the bytes (back-pressure), and a client that has gone away surfaces as
  :data:`ClientGone` on the next write.
* :class:`UpstreamClient` and :class:`UpstreamAnswer` -- the request to the upstream and its
  answer, read whole or chunk by chunk as it arrives; the stack's errors surface as
  :class:`~keyguard.errors.UpstreamTimedOut`, :class:`~keyguard.errors.UpstreamNotReached`
  (another backend may be tried) or another :class:`~keyguard.errors.UpstreamFailed`.

The interfaces ask nothing per chunk beyond what a stack does anyway: a chunk is one awaited
read and one awaited write, with no wrapper object between the stack and the relay.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from types import TracebackType
from typing import Literal, Protocol

from ..errors import UpstreamTooLarge

__all__ = [
    "Answer",
    "AnswerMaker",
    "ClientGone",
    "HeaderLookup",
    "Headers",
    "Incoming",
    "Peer",
    "StreamedAnswer",
    "UpstreamAnswer",
    "UpstreamClient",
    "MAX_ANSWER_BYTES",
    "media_type",
    "read_capped",
]

#: A write to a client that has gone away raises this. The builtin, so a stack whose writes
#: raise it (or a subclass: aiohttp does) needs no wrapping on the hot path.
ClientGone = ConnectionResetError


_OCTETS = "application/octet-stream"

#: ``proxy.max_answer_bytes``' default: an upstream answer read whole, one event of a stream,
#: or what the guardrails hold back of one, at most
MAX_ANSWER_BYTES = 128 << 20


async def read_capped(read_chunk: Callable[[], Awaitable[bytes]], limit: int) -> bytes:
    """A body of unknown length read chunk by chunk to its end (``b""``), for adapters whose
    stack reads a whole body without a cap: :class:`~keyguard.errors.UpstreamTooLarge` as
    soon as more than ``limit`` bytes have arrived (nothing more is read)."""
    parts: list[bytes] = []
    size = 0
    while chunk := await read_chunk():
        size += len(chunk)
        if size > limit:
            raise UpstreamTooLarge("body")
        parts.append(chunk)
    return b"".join(parts)


def media_type(content_type: str | None) -> str:
    """A ``Content-Type`` value's media type, without parameters, lower case;
    ``application/octet-stream`` when there is none (what :attr:`Incoming.content_type` and
    :attr:`UpstreamAnswer.content_type` say, for adapters whose stack does not say it)."""
    if not content_type:
        return _OCTETS
    return content_type.partition(";")[0].strip().lower() or _OCTETS


class HeaderLookup(Protocol):
    """Reading one header by name (case-insensitive for a request's or answer's headers)."""

    def get(self, key: str, /) -> str | None: ...


class Headers(HeaderLookup, Protocol):
    """A message's headers: case-insensitive, a name may repeat, in the order received."""

    def getall(self, key: str, default: tuple[()], /) -> list[str] | tuple[()]: ...

    def items(self) -> Iterable[tuple[str, str]]: ...

    def __contains__(self, key: object, /) -> bool: ...


class Answer(Protocol):
    """A whole answer, made by :meth:`Incoming.answer`; the stack writes it once the pipeline
    returns it."""

    @property
    def streamed(self) -> Literal[False]: ...

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> MutableMapping[str, str]:
        """Case-insensitive; the pipeline may still add to them."""
        ...

    @property
    def body(self) -> object:
        """The body given (``bytes``; a stack may declare a wider type)."""
        ...


#: What makes a whole answer: ``(status, headers, body)``; :meth:`Incoming.answer` is one.
AnswerMaker = Callable[[int, Mapping[str, str], bytes], Answer]


class StreamedAnswer(Protocol):
    """An answer sent as it is made: :meth:`start` sends the status and headers, each
    :meth:`write` a chunk; a client that has gone away raises :data:`ClientGone`."""

    @property
    def streamed(self) -> Literal[True]: ...

    @property
    def status(self) -> int: ...

    @property
    def started(self) -> bool:
        """Whether anything (the status line at least) has been sent to the client."""
        ...

    async def start(self) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self, data: bytes = b"") -> None:
        """The end of the answer, after ``data`` (sent together where the stack can: one
        write for a stream's last events and its end)."""
        ...


class Peer(Protocol):
    """Where a request comes from, as a client address is read (:mod:`.netaddr`): the TCP
    peer and the headers. Any port's request is one (the admin port's aiohttp requests too)."""

    @property
    def remote(self) -> str | None:
        """The TCP peer's address (``None`` when unknown)."""
        ...

    @property
    def headers(self) -> Headers: ...


class Incoming(Peer, Protocol):
    """One client request, as the pipeline reads it."""

    @property
    def method(self) -> str: ...

    @property
    def raw_path(self) -> str:
        """The request target as sent: path and query, nothing decoded."""
        ...

    @property
    def path(self) -> str:
        """The path, percent-decoded (for records only: routing reads :attr:`raw_path`)."""
        ...

    @property
    def content_length(self) -> int | None: ...

    @property
    def content_type(self) -> str:
        """The media type, without parameters; ``application/octet-stream`` when none."""
        ...

    def peer_certificate(self) -> bytes | None:
        """The client certificate the TLS handshake verified (DER), if any."""
        ...

    async def read_body(self, limit: int) -> bytes | None:
        """The whole body; ``None`` when it is longer than ``limit`` bytes, however it is
        framed (the rest is then not read)."""
        ...

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        """A whole answer to this request."""
        ...

    def stream(self, status: int, headers: Mapping[str, str]) -> StreamedAnswer:
        """An answer to this request to be written chunk by chunk (nothing is sent yet)."""
        ...


class UpstreamAnswer(Protocol):
    """The upstream's answer. ``async with`` it: on the way out the connection is given back
    (or dropped, when the body was not read to its end)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    @property
    def content_type(self) -> str: ...

    async def read_all(self, limit: int) -> bytes:
        """The whole body; :class:`~keyguard.errors.UpstreamTooLarge` when it is longer than
        ``limit`` bytes (said by its length, before anything is read, or found while reading),
        any other :class:`~keyguard.errors.UpstreamFailed` as the stack fails."""
        ...

    async def read_chunk(self) -> bytes:
        """The next bytes as they arrive; ``b""`` at the end. Errors as :meth:`read_all`."""
        ...

    def close(self) -> None:
        """Drop the connection: the rest of the body is never read."""
        ...

    def release(self) -> None:
        """Give the connection back without reading the body (a failed-over answer)."""
        ...

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class UpstreamClient(Protocol):
    """The pool of connections toward the upstreams."""

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        tls: ssl.SSLContext | bool,
    ) -> UpstreamAnswer:
        """Send one request (redirects are never followed); its answer once the status and
        headers are in. :class:`~keyguard.errors.UpstreamTimedOut`,
        :class:`~keyguard.errors.UpstreamNotReached` or :class:`~keyguard.errors.UpstreamFailed`
        when it fails."""
        ...

    async def close(self) -> None: ...
