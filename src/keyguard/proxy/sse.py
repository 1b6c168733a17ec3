"""Server-sent events as they pass through: whole events only, usage read, usage chunk dropped.

:class:`SseTap` is fed the upstream's bytes chunk by chunk and returns what to send to the
client now: every complete event (a partial trailing event waits for its end, so no event is
ever split or altered), with the usage read from the event that carries a usage object. A
waiting event is kept as the pieces it came in (joined once, when its end arrives) and may
grow to ``max_event_bytes``: beyond, :class:`~keyguard.errors.UpstreamTooLarge` and the
pieces are dropped. When
Keyguard asked Azure for usage on the client's behalf (``stream_options.include_usage``), the
usage-only chunk (``"choices": []`` with a ``usage`` object) is dropped so the client sees
exactly the stream it asked for. Events without a usage object (``"usage": null`` included)
pass through unparsed.

:func:`streamed_text` recovers the text already streamed, to charge a stream that ended without
a usage event (the client went away, or the upstream broke off).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from ..core.request import Usage
from ..core.transport import MAX_ANSWER_BYTES
from ..errors import UpstreamTooLarge

__all__ = ["SseTap", "StreamedText", "streamed_text"]

_FOLD_BYTES = 1 << 20  # events kept raw before their text is taken out
_MAX_CHARS = 8 << 20  # text kept to charge a stream cut short (far above any model's output)


def _events(buf: bytes) -> Iterator[bytes]:
    """The complete events in ``buf``, each with its terminating blank line."""
    start, size = 0, len(buf)
    has_cr = b"\r" in buf
    while start < size:
        end = _event_end(buf, start, has_cr)
        if end < 0:
            return
        yield buf[start:end]
        start = end


def _event_end(buf: bytes, start: int, has_cr: bool) -> int:
    """The end of the event that begins at ``start`` (after its blank line), or -1 when it is
    not complete. ``has_cr``: whether ``buf`` holds a carriage return at all."""
    lf = buf.find(b"\n\n", start)
    crlf = buf.find(b"\n\r\n", start) if has_cr else -1
    if lf < 0 and crlf < 0:
        return -1
    if crlf < 0 or 0 <= lf < crlf:
        return lf + 2
    return crlf + 3


def _boundary(buf: bytes, cr: bool) -> int:
    """End of the last complete event in ``buf`` (index after its blank line), or -1: a line
    end then an empty line, either ending in LF or CRLF (``\\r\\n\\r\\n`` holds ``\\n\\r\\n``, as
    :func:`_event_end` reads them). ``cr``: whether ``buf`` holds a carriage return at all
    (else the CRLF forms are not searched)."""
    lf = buf.rfind(b"\n\n")
    crlf = buf.rfind(b"\n\r\n") if cr else -1
    return max(lf + 2 if lf >= 0 else -1, crlf + 3 if crlf >= 0 else -1)


def _data(event: bytes) -> Any:
    """The JSON object of an event's ``data:`` lines (joined by newlines), or ``None``."""
    parts = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[6:] if line.startswith(b"data: ") else line[5:]
            parts.append(value[:-1] if value.endswith(b"\r") else value)
    if not parts:
        return None
    raw = parts[0] if len(parts) == 1 else b"\n".join(parts)
    if not raw.startswith(b"{"):
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


class SseTap:
    def __init__(self, *, strip_usage_chunk: bool, max_event_bytes: int = MAX_ANSWER_BYTES) -> None:
        self._strip = strip_usage_chunk
        self._max = max_event_bytes
        self._waiting: list[bytes] = []  # the pieces of an event whose end has not come
        self._size = 0  # their length
        self._tail = b""  # their last 3 bytes: where an end may begin
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> bytes:
        waiting = self._waiting
        if waiting:
            joint = self._tail + chunk
            if _boundary(joint, b"\r" in joint) < 0:  # the event goes on
                return self._wait(chunk, joint)
            waiting.append(chunk)
            buf = b"".join(waiting)
            waiting.clear()
            self._size = 0
        else:
            buf = chunk
        cr = b"\r" in buf
        end = _boundary(buf, cr)
        if end < 0:
            return self._wait(buf, buf)
        out = buf[:end]
        if end < len(buf):
            rest = buf[end:]
            waiting.append(rest)
            self._size, self._tail = len(rest), rest[-3:]
        pos = _last_usage(out, len(out))
        if pos >= 0:
            out = self._read_usage(out, pos, cr)
        return out

    def _wait(self, piece: bytes, joint: bytes) -> bytes:
        """Keep ``piece`` of an event not yet complete (``joint``: the bytes that end with it,
        for the tail); past the cap, drop the event and raise."""
        if piece:
            self._waiting.append(piece)
            self._size += len(piece)
            self._tail = joint[-3:]
            if self._size > self._max:
                self._waiting.clear()
                self._size = 0
                raise UpstreamTooLarge("event")
        return b""

    def flush(self) -> bytes:
        rest = b"".join(self._waiting)
        self._waiting.clear()
        self._size = 0
        return rest

    def _read_usage(self, out: bytes, pos: int, cr: bool) -> bytes:
        """Read (and maybe drop) each event of ``out`` that carries a usage object, from the
        last one back (usage comes at the end of a stream: the search starts where it is).
        The events dropped are cut out at the end, in one pass (a read may hold thousands)."""
        latest: Usage | None = None
        dropped: list[tuple[int, int]] = []  # from the last back
        while pos >= 0:
            start, end = _event_around(out, pos, cr)
            obj = _data(out[start:end])
            if isinstance(obj, dict):
                usage = obj.get("usage")
                response = obj.get("response")
                if not isinstance(usage, dict) and isinstance(response, dict):
                    usage = response.get("usage")  # Responses API: response.completed
                if isinstance(usage, dict):
                    if latest is None:
                        latest = Usage.from_azure(usage)
                    if self._strip and obj.get("choices") == []:
                        dropped.append((start, end))
            pos = _last_usage(out, start)
        if latest is not None:
            self.usage = latest
        if not dropped:
            return out
        kept, at = [], len(out)
        for start, end in dropped:
            kept.append(out[end:at])
            at = start
        kept.append(out[:at])
        return b"".join(reversed(kept))


def _last_usage(data: bytes, end: int) -> int:
    """Where the last usage object before ``end`` starts (``"usage":{`` or ``"usage": {``;
    ``"usage":null`` is skipped), or -1. One backward scan."""
    pos = data.rfind(b'"usage":', 0, end)
    while pos >= 0:
        after = pos + 8
        if data[after : after + 1] == b"{" or data[after : after + 2] == b" {":
            return pos
        pos = data.rfind(b'"usage":', 0, pos)
    return -1


def _event_around(data: bytes, pos: int, cr: bool) -> tuple[int, int]:
    """Bounds of the complete event that contains ``pos`` (``data`` holds whole events)."""
    lf = data.rfind(b"\n\n", 0, pos)
    crlf = data.rfind(b"\n\r\n", 0, pos) if cr else -1
    start = max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)
    lf = data.find(b"\n\n", pos)
    crlf = data.find(b"\n\r\n", pos) if cr else -1
    ends = [i + n for i, n in ((lf, 2), (crlf, 3)) if i >= 0]
    return start, min(ends) if ends else len(data)


class StreamedText:
    """What a stream sent its client, kept to charge it if it ends without a usage event:
    whole events, their text taken out each MiB (the events are several times their text),
    at most ``_MAX_CHARS`` characters of it (an upstream streaming without end cannot grow
    it further)."""

    __slots__ = ("_events", "_size", "_texts", "_chars")

    def __init__(self) -> None:
        self._events: list[bytes] = []
        self._size = 0
        self._texts: list[str] = []
        self._chars = 0

    def add(self, events: bytes) -> None:
        self._events.append(events)
        self._size += len(events)
        if self._size >= _FOLD_BYTES:
            self._fold()

    def text(self) -> str:
        self._fold()
        return "".join(self._texts)

    def _fold(self) -> None:
        if self._events and self._chars < _MAX_CHARS:
            text = streamed_text(self._events)[: _MAX_CHARS - self._chars]
            self._texts.append(text)
            self._chars += len(text)
        self._events.clear()
        self._size = 0


def streamed_text(chunks: list[bytes]) -> str:
    """The completion text carried by the content events in ``chunks`` (whole events)."""
    pieces: list[str] = []
    for event in _events(b"".join(chunks)):
        obj = _data(event)
        if not isinstance(obj, dict):
            continue
        if obj.get("type") == "response.output_text.delta":
            delta = obj.get("delta")
            if isinstance(delta, str):
                pieces.append(delta)
            continue
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(content, str):
                pieces.append(content)
    return "".join(pieces)
