"""What a stream held by :class:`~.guard_stream.StreamGuard` is made of, and the byte-level
reading of a chunk.

An :class:`Event` is one server-sent event with the :class:`Piece` s of text it carries (where
each lies in its choice's whole streamed text); a :class:`Run` is consecutive plain text chunks
of one choice kept as their bytes (no object per chunk); a :class:`Text` is a choice's streamed
text, the part not yet forgotten. The functions read a plain chunk's shape without parsing it,
point a piece at the dict that holds its text when an edit must be written, and apply edits.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import add, itemgetter
from typing import Any

import orjson

from .sse import _data

__all__ = [
    "Key", "Piece", "Event", "Run", "Text", "NO_PIECES", "PLAIN", "PLAIN_WHOLE", "each",
    "filtered_end", "small", "opaque", "rewritten", "shape_key", "holder", "apply_edits",
    "plain_run",
]  # fmt: skip

Key = tuple[int, int]  # (choice index, the tool call's index or one of StreamGuard's slots)

# The common chunk (one choice, its delta only text with nothing escaped) is read with a bytes
# search; anything else is parsed. Inside a JSON string a quote is always escaped, so these
# literals are keys, never text.
_FAST_DELTA = re.compile(rb'"delta":\{(?:"role":"assistant",)?"content":"([^"\\\x00-\x1f]*)"\}')
PLAIN = re.compile(rb'[^"\\\x00-\x1f]*')
PLAIN_WHOLE = PLAIN.fullmatch  # (raw, start, end): the text between has nothing escaped
# the choice's index, first in it or last (the one "index" of the chunk is where these begin)
_INDEX_FIRST = re.compile(rb'"choices":\[\{"index":(\d{1,4}),')
_INDEX_LAST = re.compile(rb',"index":(\d{1,4})(?:,"logprobs":null)?\}\]')


_RUN_BYTES = 16_384  # bytes read as one run at a time (a longer run is taken in several)


def plain_run(
    data: bytes, pos: int, head: bytes, tail: bytes, begin: int
) -> tuple[int, str, list[int], list[int]] | None:
    """The plain chunks ``head + text + tail`` that follow one another from ``pos`` (where
    ``data`` starts with ``head``), read without a step per chunk: ``data`` is split at each
    ``tail``, and a part that is ``head`` and a text with nothing escaped is one chunk (a text
    cannot hold ``tail``, which starts with a quote). Returns where the run ends, its texts
    joined, where each chunk ends in the run and where its text ends (from ``begin``);
    ``None`` when a text is not ASCII or no chunk is whole (the caller then reads chunk by
    chunk)."""
    parts = data[pos : pos + _RUN_BYTES].split(tail)
    parts.pop()  # no tail after it in reach: not a whole chunk
    if not parts:
        return None
    size = len(head)
    values = list(map(itemgetter(slice(size, None)), parts))
    if b"".join(parts) != head + head.join(values):  # a part is not head + text
        n = next((i for i, p in enumerate(parts) if not p.startswith(head)), len(parts))
        values = values[:n]  # another shape ends the run
    joined = b"".join(values)
    if not joined.isascii():
        return None
    plain = PLAIN.match(joined).end()  # type: ignore[union-attr]  # always matches
    if plain < len(joined):  # the chunk with the first quote or escape, and all after it, are not
        values = values[: bisect_right(list(accumulate(map(len, values))), plain)]
        joined = b"".join(values)
    if not values:
        return None
    unit = size + len(tail)
    lens = list(accumulate(map(len, values)))
    ends = list(map(add, lens, range(unit, unit * (len(values) + 1), unit)))
    text_ends = list(map(add, lens, repeat(begin))) if begin else lens
    return pos + ends[-1], joined.decode("ascii"), ends, text_ends


@dataclass(slots=True)
class Piece:
    key: Key
    start: int  # offsets in the choice's whole streamed text
    end: int
    holder: dict[str, Any] | None  # the dict whose ``field`` carries the text (None: unparsed)
    field: str


class Event:
    __slots__ = ("raw", "obj", "pieces")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.obj: Any = None
        self.pieces: list[Piece] = NO_PIECES


NO_PIECES: list[Piece] = []  # shared by events without text (never appended to)


class Run:
    """Consecutive plain text chunks of one key, as their bytes: ``ends[i]``, where chunk ``i``
    ends in ``raw``; ``text_ends[i]``, where its text ends in the key's whole text (``begin``:
    where the first one's begins)."""

    __slots__ = ("raw", "key", "begin", "ends", "text_ends")

    def __init__(
        self, raw: bytes, key: Key, begin: int, ends: list[int], text_ends: list[int]
    ) -> None:
        self.raw = raw
        self.key = key
        self.begin = begin
        self.ends = ends
        self.text_ends = text_ends

    def take(self, k: int) -> bytes:
        """The bytes of the first ``k`` chunks (0 < k < len), which leave the run."""
        cut = self.ends[k - 1]
        out, self.raw = self.raw[:cut], self.raw[cut:]
        self.begin = self.text_ends[k - 1]
        self.ends = [end - cut for end in self.ends[k:]]
        del self.text_ends[:k]
        return out

    def events(self) -> list[Event]:
        """The run as one event per chunk (for an edit to be written into them)."""
        out: list[Event] = []
        at, begin = 0, self.begin
        for end, text_end in zip(self.ends, self.text_ends, strict=True):
            event = Event(self.raw[at:end])
            if text_end > begin:
                event.pieces = [Piece(self.key, begin, text_end, None, "content")]
            out.append(event)
            at, begin = end, text_end
        return out


class Text:
    """A choice's streamed text from ``base`` on (new pieces joined when it is read)."""

    __slots__ = ("_text", "_new", "base", "end", "sent", "decided", "read", "frontier")

    def __init__(self) -> None:
        self._text = ""
        self._new: list[str] = []
        self.base = 0
        self.end = 0  # offset of its end in the whole streamed text
        self.sent = 0  # offset up to which its events were released
        self.decided = 0  # matches ending before this are decided
        self.read = 0  # the text was last read up to this offset (settled then)
        self.frontier = 0  # its events may be released up to this offset (at its last review)

    def add(self, value: str) -> int:
        start = self.end
        self._new.append(value)
        self.end += len(value)
        return start

    @property
    def text(self) -> str:
        if self._new:
            self._text = "".join((self._text, *self._new))
            self._new.clear()
        return self._text

    def drop(self, upto: int) -> None:
        """Forget the text before offset ``upto``."""
        cut = upto - self.base
        self._text = self.text[cut:]
        self.base = upto


def each(item: Event | Run) -> list[Event]:
    return item.events() if isinstance(item, Run) else [item]


def small(value: Any) -> int:
    """An index from a chunk, kept small (a hostile value cannot grow the tables)."""
    return value if isinstance(value, int) and 0 <= value < 1024 else 0


def opaque(raw: bytes) -> str:
    """The data of an event that is not a JSON object, as text ("" for none or ``[DONE]``)."""
    parts = [line[5:].strip() for line in raw.split(b"\n") if line.startswith(b"data:")]
    data = b"\n".join(part for part in parts if part)
    if not data or data == b"[DONE]":
        return ""
    return data.decode("utf-8", "replace")


def rewritten(raw: bytes, obj: Any) -> bytes:
    """The event with its data written anew from ``obj`` (its other lines, such as
    ``event:`` and ``id:``, kept)."""
    kept = [
        line for line in raw.rstrip(b"\r\n").split(b"\n") if line and not line.startswith(b"data:")
    ]
    return b"\n".join([*kept, b"data: " + orjson.dumps(obj)]) + b"\n\n"


def shape_key(raw: bytes, start: int, end: int) -> Key | None:
    """The key of a chunk whose text is ``raw[start:end]`` (unescaped, a quote after it) when
    the chunk is one data line of one choice with a delta holding only that text."""
    if (
        end >= len(raw)
        or raw[end] != 0x22  # '"': the text ends unescaped
        or not raw.startswith(b"data: {")
        or raw.find(b"\n") != len(raw) - 2
        or raw.count(b'"index":') != 1
        or raw.count(b'"content":') != 1
        or raw.count(b'"delta":') != 1
        or b'"text"' in raw
        or b'"type"' in raw
        or b'"tool_calls"' in raw
    ):
        return None
    delta = _FAST_DELTA.search(raw)
    at = raw.find(b'"index":')  # the only one
    index = _INDEX_FIRST.match(raw, at - 12) if at >= 12 else None
    if index is None:
        index = _INDEX_LAST.match(raw, at - 1) if at >= 1 else None
    if delta is None or index is None or delta.start(1) != start or delta.end(1) != end:
        return None
    choice = int(index.group(1))
    return (choice if choice < 1024 else 0, -1)


def holder(event: Event, piece: Piece) -> bool:
    """Parse an event read without parsing and point ``piece`` at the dict holding its text."""
    obj = _data(event.raw)
    choices = obj.get("choices") if isinstance(obj, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and isinstance(delta.get(piece.field), str):
            event.obj, piece.holder = obj, delta
            return True
    return False


def apply_edits(value: str, start: int, end: int, edits: list[tuple[int, int, str]]) -> str:
    """The piece ``value`` (covering ``[start, end)`` of its text) with the edits applied: the
    parts of an edited span inside the piece are removed, and the replacement is put in the
    piece where the span begins."""
    out: list[str] = []
    pos = start
    for e_start, e_end, new in sorted(edits):
        if e_end <= start or e_start >= end:
            continue
        cut_from, cut_to = max(e_start, start), min(e_end, end)
        if cut_from < pos:
            continue
        out.append(value[pos - start : cut_from - start])
        if e_start >= start:
            out.append(new)
        pos = cut_to
    out.append(value[pos - start :])
    return "".join(out)


def filtered_end(category: str, family: str, head: dict[str, Any], *, responses: bool) -> bytes:
    """The end of a blocked stream, as Azure ends a filtered one: a chunk whose choice has
    ``finish_reason: "content_filter"`` naming the category, then ``[DONE]`` (``head``: the
    chunks' id, created, model, ...); a Responses stream gets an error event."""
    if responses:
        error = {
            "type": "error",
            "code": "content_filter",
            "message": f"The answer was cut by the gateway's guardrails ({category}).",
            "param": None,
        }
        return b"data: " + orjson.dumps(error) + b"\n\n"
    results = {category: {"filtered": True, "detected": True, "family": family}}
    choice = {
        "content_filter_results": results,
        "delta": {},
        "finish_reason": "content_filter",
        "index": 0,
        "logprobs": None,
    }
    return b"data: " + orjson.dumps({"choices": [choice], **head}) + b"\n\ndata: [DONE]\n\n"
