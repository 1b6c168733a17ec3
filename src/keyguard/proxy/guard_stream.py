"""The guardrails over a streamed answer: a hold-back window, then release, redact or cut.

:class:`StreamGuard` is fed whole server-sent events (as :class:`~.sse.SseTap` returns them)
and returns the events that are safe to send now. The text the events carry (chat
``delta.content`` and tool-call ``arguments``, completions ``text``, Responses
``response.output_text.delta``) is followed per choice; the last ``window`` characters are held
back, so a value split across chunks is judged whole before its last piece is sent. The held
text is read in steps (each time a quarter of the window more has arrived, so a long answer
is read a few times over, not once per chunk) together with ``context`` characters before it
(the words that make a value recognisable, such as ``password=``); a match is decided once it
ends before the held-back tail (or at the end of the stream), never while it may still grow,
and nothing is released past the start of a match not yet decided.

* ``block``: the held events are dropped and the stream ends as Azure ends a filtered one: a
  chunk whose choice has ``finish_reason: "content_filter"`` and ``content_filter_results``
  naming the category, then ``data: [DONE]`` (a Responses stream gets an error event);
* ``redact``: the value's pieces are cut out of the held events and its placeholder put where
  it began; ``restore``: this request's placeholders get their values back;
* ``alert`` and ``log``: noted in :attr:`hits` (the stage raises the events).

A plain text chunk (one choice whose ``delta`` holds only unescaped text) is read with a bytes
search, its shape checked once per shape; any other chunk is parsed. Consecutive chunks of one
shape are kept as a run: their bytes, where each ends and where its text ends, with no object
per chunk; a run is released by slicing its bytes at a chunk's end. A chunk so read is parsed
only when an edit must be written into it, and dropped if it then does not parse.

Nothing is sent unread (fail closed): an event whose data is not a JSON object (cut short,
malformed) is read as raw text on a stream of its own, and dropped if it must be edited; the
texts of a chat chunk are its ``content``, ``refusal`` and tool or function call ``arguments``
(a completion's ``text``); a Responses stream's text deltas (``output_text``, ``refusal``,
``function_call_arguments``, ...) are followed like chat's, and its other events, which repeat
the whole text (``response.output_text.done``, ``response.completed``, ...), have every string
read and decided when they arrive, so a value redacted in the deltas is redacted there too.

Memory is bounded: per choice, the text kept is the held tail plus ``context`` characters;
the events held, at most ``max_held_bytes`` and :data:`MAX_HELD_EVENTS` (events without text
wait behind a held text, so an upstream could otherwise pile them up), the texts followed at
most :data:`MAX_TEXTS`: beyond, :class:`~keyguard.errors.UpstreamTooLarge`
(the relay then judges what is held as the stream's end, sends it and ends the stream).
Work per event is bounded by what it brings, not by what the stream holds: a feed reviews
only the texts it added to (an upstream may open a text per choice and tool call, up to a
million) and visits only the held events it releases and the first it keeps (an upstream may
pile events without text behind a held text).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ..core.transport import MAX_ANSWER_BYTES
from ..errors import UpstreamTooLarge
from ..guard.decide import MAX_HITS, PLACEHOLDER, Hit, Placeholders
from ..guard.findings import Match
from ..policy.guardrails import Effective
from .sse import _data, _event_end
from .stream_pieces import (
    NO_PIECES,
    PLAIN,
    PLAIN_WHOLE,
    Event,
    Key,
    Piece,
    Run,
    Text,
    apply_edits,
    filtered_end,
    holder,
    opaque,
    plain_run,
    rewritten,
    shape_key,
    small,
)

__all__ = ["MAX_HELD_EVENTS", "MAX_TEXTS", "StreamGuard"]

#: texts followed at once (one per choice and tool call: 128 choices of 128 calls), and events
#: held (as parsed objects, many times their bytes): an upstream opening texts without end or
#: piling events behind a held text is stopped here, not only at ``max_held_bytes``
MAX_TEXTS = 16_384
MAX_HELD_EVENTS = 65_536

_CONTENT, _REFUSAL, _FUNCTION, _OTHER = -1, -2, -3, -4
_DONE = b"data: [DONE]\n\n"
_RAW: Key = (-1, -1)  # events whose data is not a JSON object, read as raw text
_RESPONSES_DELTAS = {
    "response.output_text.delta": _CONTENT,
    "response.refusal.delta": _REFUSAL,
    "response.function_call_arguments.delta": _FUNCTION,
}
# strings of a Responses event that name or number things, never text a model wrote
_STRUCTURAL = frozenset(
    {"type", "id", "object", "status", "role", "model", "item_id", "call_id", "name",
     "previous_response_id", "service_tier", "truncation", "tool_choice", "logprobs"}
)  # fmt: skip


class StreamGuard:
    def __init__(
        self,
        scan: Callable[[str], list[Match]],
        actions: Effective,
        fingerprint: Callable[[str], str],
        *,
        placeholders: Placeholders,
        restore: Mapping[str, str] | None,
        window: int,
        context: int,
        max_held_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._scan = scan
        self._actions = actions
        self._fingerprint = fingerprint
        self._placeholders = placeholders
        self._restore = restore or {}
        self._window = window
        self._context = context
        self._step = max(1, window // 4)  # new text judged in steps: each read covers more
        self._held: list[Event | Run] = []
        self._held_bytes = 0  # of the events held (as they came)
        self._max_held = max_held_bytes
        self._texts: dict[Key, Text] = {}
        self._grown: dict[Key, None] = {}  # the texts added to since they were last reviewed
        self._edits: dict[Key, list[tuple[int, int, str]]] = {}
        self._head: dict[str, Any] = {}  # id, created, model, object of the last chunk
        self._responses = False
        self._shape: tuple[bytes, bytes] = (b"\0", b"\0")  # of the last plain text chunk
        self._shape_key: Key = (0, -1)
        self._shape_text: Text | None = None  # the text of the shape's key
        self.hits: list[Hit] = []
        self.more_hits = 0
        self._seen: set[tuple[str, str]] = set()  # (category, fingerprint) already noted
        self.blocked: Hit | None = None

    @property
    def cut(self) -> bool:
        return self.blocked is not None

    # -- in -----------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Whole events in; the events safe to send now out (the end of the stream when a
        value to block was found: then nothing more may be fed)."""
        if self.cut:
            return b""
        pos, size = 0, len(data)
        self._held_bytes += size
        has_cr = b"\r" in data
        while pos < size:
            pos = self._run(data, pos)
            end = _event_end(data, pos, has_cr) if pos < size else -1
            if end < 0:
                break
            self._held.append(self._parse(data[pos:end]))
            if self.cut:
                return self._cut()
            pos = end
        if (  # ``flush`` then judges and releases it all
            self._held_bytes > self._max_held
            or len(self._held) > MAX_HELD_EVENTS
            or len(self._texts) > MAX_TEXTS
        ):
            raise UpstreamTooLarge("held")
        return self._advance(final=False)

    def flush(self, rest: bytes = b"") -> bytes:
        """The end of the stream (``rest``: a trailing partial event): everything decided and
        released."""
        if self.cut:
            return b""
        if rest:
            self._held.append(self._parse(rest))
            if self.cut:
                return self._cut()
        return self._advance(final=True)

    def _run(self, data: bytes, pos: int) -> int:
        """Take the plain text chunks of the last shape that follow one another from ``pos``
        as one :class:`Run`; return where they end (``pos`` when there is none)."""
        head, tail = self._shape
        if not self._head or self._responses or not data.startswith(head, pos):
            return pos
        text = self._shape_text or self._shaped_text()
        whole = plain_run(data, pos, head, tail, text.end)
        if whole is not None:
            end, value, chunk_ends, value_ends = whole
            if value:
                text._new.append(value)
                self._grown[self._shape_key] = None
            self._held.append(Run(data[pos:end], self._shape_key, text.end, chunk_ends, value_ends))
            text.end = value_ends[-1]
            return end
        size, skip = len(head), len(tail)
        plain = PLAIN.match
        start, begin = pos, text.end
        at = begin
        ends: list[int] = []
        text_ends: list[int] = []
        values: list[str] = []
        while data.startswith(head, pos):
            first = pos + size
            last = plain(data, first).end()  # type: ignore[union-attr]  # always matches
            if not data.startswith(tail, last):
                break
            if last > first:
                try:
                    value = data[first:last].decode()
                except UnicodeDecodeError:
                    break  # read on its own, as any other chunk
                values.append(value)
                at += len(value)
            pos = last + skip
            ends.append(pos - start)
            text_ends.append(at)
        if not ends:
            return start
        if values:
            text._new.extend(values)
            self._grown[self._shape_key] = None
        text.end = at
        self._held.append(Run(data[start:pos], self._shape_key, begin, ends, text_ends))
        return pos

    def _shaped_text(self) -> Text:
        """The text of the last plain shape's key (kept until the shape changes)."""
        key = self._shape_key
        text = self._shape_text = self._texts.get(key) or self._texts.setdefault(key, Text())
        return text

    def _fast(self, raw: bytes) -> Event | None:
        """The event of a plain text chunk, read without parsing it; ``None`` for any other.

        The bytes around the text (the chunk's shape) are checked once; the next chunks of the
        same shape are recognised by comparing them, so a chunk costs two comparisons and a
        check that its text has nothing escaped."""
        if not self._head or self._responses:
            return None
        head, tail = self._shape
        start, end = len(head), len(raw) - len(tail)
        if not (
            start <= end
            and raw.startswith(head)
            and raw.endswith(tail)
            and PLAIN_WHOLE(raw, start, end) is not None
        ):
            at = raw.find(b'"content":"')
            if at < 0:
                return None
            start = at + 11
            end = PLAIN.match(raw, start).end()  # type: ignore[union-attr]  # always matches
            key = shape_key(raw, start, end)
            if key is None:
                return None
            self._shape, self._shape_key = (raw[:start], raw[end:]), key
            self._shape_text = None
        try:
            value = raw[start:end].decode()
        except UnicodeDecodeError:
            return None
        event = Event(raw)
        if value:
            text = self._shape_text or self._shaped_text()
            begin = text.end
            text._new.append(value)
            text.end = begin + len(value)
            event.pieces = [Piece(self._shape_key, begin, text.end, None, "content")]
            self._grown[self._shape_key] = None
        return event

    def _parse(self, raw: bytes) -> Event:
        if raw == _DONE:  # no text
            return Event(raw)
        fast = self._fast(raw)
        if fast is not None:
            return fast
        event = Event(raw)
        if raw.startswith(b"data: {") and raw.find(b"\n") == len(raw) - 2:  # one data line
            try:
                obj = orjson.loads(raw[6:-2])
            except orjson.JSONDecodeError:
                obj = None
        else:
            obj = _data(raw)
        if not isinstance(obj, dict):
            text = opaque(raw)
            if text:  # not JSON: read as it is, never sent unread
                self._add_value(event, _RAW, text, None, "raw")
            return event
        event.obj = obj
        kind = obj.get("type")
        if isinstance(kind, str):
            self._responses = True
            slot = _RESPONSES_DELTAS.get(kind)
            if slot is None and kind.endswith(".delta"):
                slot = _OTHER
            if slot is not None:
                self._add(event, (small(obj.get("output_index")), slot), obj, "delta")
            else:
                self._whole(event, obj)
            return event
        if not self._head and obj.get("id"):  # the chunks' common fields, for a cut
            for name in ("id", "created", "model", "object", "system_fingerprint"):
                if name in obj:
                    self._head[name] = obj[name]
        choices = obj.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            index = small(choice.get("index"))
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._add(event, (index, _CONTENT), delta, "content")
                self._add(event, (index, _REFUSAL), delta, "refusal")
                function = delta.get("function_call")
                if isinstance(function, dict):
                    self._add(event, (index, _FUNCTION), function, "arguments")
                calls = delta.get("tool_calls")
                for call in calls if isinstance(calls, list) else ():
                    function = call.get("function") if isinstance(call, dict) else None
                    if isinstance(function, dict):
                        slot = small(call.get("index"))
                        self._add(event, (index, slot), function, "arguments")
            else:
                self._add(event, (index, _CONTENT), choice, "text")
        return event

    def _whole(self, event: Event, obj: dict[str, Any]) -> None:
        """Decide every text of an event that carries whole texts (a Responses stream's
        ``.done`` and ``response.*`` events): block cuts the stream, redact and restore rewrite
        the event before it is held."""
        changed = False
        stack: list[Any] = [obj]
        while stack:
            node = stack.pop()
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for name, value in items:
                if isinstance(value, str):
                    if value and name not in _STRUCTURAL:
                        new = self._judge_whole(value)
                        if self.cut:
                            return
                        if new is not value:
                            node[name] = new
                            changed = True
                elif isinstance(value, dict | list):
                    stack.append(value)
        if changed:
            event.raw = rewritten(event.raw, obj)

    def _judge_whole(self, value: str) -> str:
        """``value`` with the decided edits applied (the same object when none)."""
        edits: list[tuple[int, int, str]] = []
        for match in self._scan(value):
            found = value[match.start : match.end]
            action = self._decide_value(match, found)
            if self.cut:
                return value
            if action == "redact":
                placeholder = self._placeholders.for_value(match.category, found)
                edits.append((match.start, match.end, placeholder))
        if self._restore:
            for tag in PLACEHOLDER.finditer(value):
                restored = self._restore.get(tag.group())
                if restored is not None:
                    edits.append((tag.start(), tag.end(), restored))
        return apply_edits(value, 0, len(value), edits) if edits else value

    def _add(self, event: Event, key: Key, holder: dict[str, Any], name: str) -> None:
        value = holder.get(name)
        if isinstance(value, str):
            self._add_value(event, key, value, holder, name)

    def _add_value(
        self, event: Event, key: Key, value: str, holder: dict[str, Any] | None, name: str
    ) -> None:
        if not value:
            return
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = Text()
        start = text.add(value)
        self._grown[key] = None
        piece = Piece(key, start, text.end, holder, name)
        if event.pieces is NO_PIECES:
            event.pieces = [piece]
        else:
            event.pieces.append(piece)

    # -- decide and release ---------------------------------------------------------------------

    def _advance(self, final: bool) -> bytes:
        """Review the texts that grew (all of them at the end) and release what may go.

        A text that did not grow keeps its frontier: reading it again finds the same."""
        texts = self._texts
        reviewed, self._grown = self._grown, {}
        for key in texts if final else reviewed:
            text = texts[key]
            text.frontier = self._review(key, text, final)
            if self.cut:
                return self._cut()
        return self._release(final, reviewed)

    def _review(self, key: Key, text: Text, final: bool) -> int:
        """Decide the matches of ``key``'s text that can no longer grow; return the offset
        its events may be released up to."""
        settled = text.end if final else text.end - self._window
        # Read again once a step more has settled; while a value may still grow (decided
        # stays at its start), once half as much more as was held at the last read: a value
        # without end (an endless token) is read a few times its length in all, not squared.
        if not final and settled - text.read < max(self._step, (text.read - text.decided) >> 1):
            return max(text.sent, min(settled, text.decided))  # too little new: read later
        text.read = settled
        origin = max(text.base, min(text.sent, text.decided) - self._context)
        window = text.text[origin - text.base :]
        frontier = settled
        for match in sorted(self._scan(window), key=lambda m: (m.start, -m.end)):
            start, end = origin + match.start, origin + match.end
            if end <= text.decided:
                continue  # decided on an earlier feed
            if end > settled:
                frontier = min(frontier, start)  # may still grow: held, decided later
                continue
            self._decide(key, match, window[match.start : match.end], start, end)
            if self.cut:
                return 0
        if self._restore:
            for found in PLACEHOLDER.finditer(window):
                start, end = origin + found.start(), origin + found.end()
                value = self._restore.get(found.group())
                if value is not None and text.decided <= start and end <= settled:
                    self._edits.setdefault(key, []).append((start, end, value))
        text.decided = max(text.decided, min(settled, frontier))
        return max(text.sent, min(settled, frontier))

    def _decide(self, key: Key, match: Match, value: str, start: int, end: int) -> None:
        action = self._decide_value(match, value)
        if action == "redact":
            placeholder = self._placeholders.for_value(match.category, value)
            self._edits.setdefault(key, []).append((start, end, placeholder))

    def _decide_value(self, match: Match, value: str) -> str:
        """Note the decision on one value found (once per value and category: a Responses
        stream repeats its text in its closing events) and return its action."""
        action = self._actions.action(match.family, match.category)
        if action == "off":
            return action
        fingerprint = self._fingerprint(value)
        hit = Hit(
            match.family, match.category, match.detector, action, "answer", "completion",
            fingerprint,
        )  # fmt: skip
        seen = (match.category, fingerprint)
        if seen not in self._seen:
            if len(self._seen) < 4 * MAX_HITS:
                self._seen.add(seen)
            if len(self.hits) < MAX_HITS:
                self.hits.append(hit)
            else:
                self.more_hits += 1
        if action == "block":
            self.blocked = hit
        return action

    def _release(self, final: bool, moved: dict[Key, None]) -> bytes:
        """The held events that may go now, in order, up to the first that may not.

        Only the events released and the first held one are visited: events piled behind a
        held text are not walked again on each feed. A run of a text with edits to write is
        taken apart into its events when it is reached. ``moved`` (the texts reviewed) gets
        the texts whose events were released, for :meth:`_trim`."""
        out: list[bytes] = []
        held = self._held
        texts = self._texts
        edits = self._edits
        n = 0
        rest: list[Event] = []  # the events of a run taken apart and not released
        for event in held:
            if type(event) is Run:
                if edits and event.key in edits:  # edits are written event by event
                    rest = self._release_events(event.events(), final, out, moved)
                    if rest:
                        break
                    n += 1
                    continue
                ends = event.text_ends
                text = texts[event.key]
                k = len(ends) if final else bisect_right(ends, text.frontier)
                if k == 0:
                    break
                if ends[k - 1] > text.sent:
                    text.sent = ends[k - 1]
                    moved[event.key] = None
                if k < len(ends):
                    taken = event.take(k)
                    self._held_bytes -= len(taken)
                    out.append(taken)
                    break
                out.append(event.raw)
                n += 1
                continue
            assert type(event) is Event
            if not self._release_event(event, final, out, moved):
                break
            n += 1
        self._held_bytes -= sum(len(item.raw) for item in held[:n])
        if rest:  # the run's events not released take its place
            self._held_bytes -= len(held[n].raw) - sum(len(e.raw) for e in rest)
            held[: n + 1] = rest
        else:
            del held[:n]
        if not held:
            self._held_bytes = 0
        self._trim(moved)
        return b"".join(out)

    def _release_events(
        self, events: list[Event], final: bool, out: list[bytes], moved: dict[Key, None]
    ) -> list[Event]:
        """Release ``events`` in order; those not released."""
        for i, event in enumerate(events):
            if not self._release_event(event, final, out, moved):
                return events[i:]
        return []

    def _release_event(
        self, event: Event, final: bool, out: list[bytes], moved: dict[Key, None]
    ) -> bool:
        """Add ``event`` to ``out`` when all its text may go (edits written); whether it did."""
        pieces = event.pieces
        if not pieces:
            out.append(event.raw)
            return True
        texts = self._texts
        if not final:
            for piece in pieces:
                if piece.end > texts[piece.key].frontier:
                    return False
        out.append(self._edited(event) if self._edits else event.raw)
        for piece in pieces:
            text = texts[piece.key]
            if piece.end > text.sent:
                text.sent = piece.end
                moved[piece.key] = None
        return True

    def _edited(self, event: Event) -> bytes:
        changed = False
        for piece in event.pieces:
            edits = self._edits.get(piece.key)
            if not edits:
                continue
            if piece.holder is None and not holder(event, piece):
                return b""  # cannot be edited: dropped, never sent as it came
            assert piece.holder is not None
            value = piece.holder[piece.field]
            new = apply_edits(value, piece.start, piece.end, edits)
            if new != value:
                piece.holder[piece.field] = new
                changed = True
        if not changed:
            return event.raw
        return rewritten(event.raw, event.obj)

    def _trim(self, keys: dict[Key, None]) -> None:
        """Forget the text of ``keys`` no longer needed, and their edits written (only these
        texts were read or released since the last trim)."""
        texts, all_edits = self._texts, self._edits
        for key in keys:
            text = texts[key]
            keep_from = min(text.sent, text.decided) - self._context
            if keep_from - text.base > 4 * self._context + 256:
                text.drop(keep_from)
            edits = all_edits.get(key)
            if edits:
                kept = [e for e in edits if e[1] > text.sent]
                if kept:
                    all_edits[key] = kept
                else:
                    del all_edits[key]

    def _cut(self) -> bytes:
        """The end of a blocked stream, as Azure ends a filtered one."""
        hit = self.blocked
        assert hit is not None
        self._held.clear()
        self._held_bytes = 0
        self._texts.clear()
        self._grown.clear()
        return filtered_end(hit.category, hit.family, self._head, responses=self._responses)
