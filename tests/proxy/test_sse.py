"""The SSE tap: whole events only, usage read, the injected usage chunk dropped."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyguard.errors import UpstreamTooLarge
from keyguard.proxy import sse
from keyguard.proxy.sse import SseTap, streamed_text


def event(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def chunk(text: str) -> bytes:
    choice = {"index": 0, "delta": {"content": text}}
    return event({"object": "chat.completion.chunk", "choices": [choice], "usage": None})


USAGE = event({"object": "chat.completion.chunk", "choices": [],
               "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
                         "prompt_tokens_details": {"cached_tokens": 2}}})  # fmt: skip
STREAM = chunk("Hel") + chunk("lo") + chunk("!") + USAGE + b"data: [DONE]\n\n"


def run(tap: SseTap, pieces: list[bytes]) -> bytes:
    out = b"".join(tap.feed(p) for p in pieces)
    return out + tap.flush()


def test_usage_is_read_and_kept_when_the_client_asked() -> None:
    tap = SseTap(strip_usage_chunk=False)
    assert run(tap, [STREAM]) == STREAM
    assert tap.usage is not None
    assert (tap.usage.prompt_tokens, tap.usage.completion_tokens, tap.usage.cached_tokens) == (
        7,
        3,
        2,
    )


def test_usage_chunk_is_dropped_when_keyguard_asked() -> None:
    tap = SseTap(strip_usage_chunk=True)
    assert run(tap, [STREAM]) == STREAM.replace(USAGE, b"")
    assert tap.usage is not None and tap.usage.total_tokens == 10


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=12))
def test_any_chunking_gives_the_same_stream(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    tap = SseTap(strip_usage_chunk=True)
    assert run(tap, pieces) == STREAM.replace(USAGE, b"")
    assert tap.usage is not None and tap.usage.completion_tokens == 3


def test_an_event_that_never_ends_stops_at_the_cap_and_is_dropped() -> None:
    tap = SseTap(strip_usage_chunk=False, max_event_bytes=1000)
    assert tap.feed(chunk("a")) == chunk("a")  # whole events pass
    assert tap.feed(b"data: {" + b"x" * 500) == b""
    with pytest.raises(UpstreamTooLarge):
        for _ in range(10):
            tap.feed(b"y" * 100)  # no end of event among them
    assert tap.flush() == b""  # nothing of the oversized event is sent


def test_an_event_up_to_the_cap_passes_whatever_its_pieces() -> None:
    big = b"data: " + orjson.dumps({"text": "z" * 900}) + b"\n\n"
    tap = SseTap(strip_usage_chunk=False, max_event_bytes=len(big))
    pieces = [big[i : i + 7] for i in range(0, len(big), 7)]
    assert b"".join(tap.feed(p) for p in pieces) == big
    assert tap.flush() == b""


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=12))
def test_an_end_split_across_pieces_is_found(cuts: list[int]) -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    points = sorted({min(c, len(crlf) - 1) for c in cuts})
    pieces = [crlf[a:b] for a, b in zip([0, *points], [*points, len(crlf)], strict=True)]
    tap = SseTap(strip_usage_chunk=False, max_event_bytes=400)  # about one event
    assert run(tap, pieces) == crlf


def test_only_whole_events_are_released() -> None:
    tap = SseTap(strip_usage_chunk=False)
    first = chunk("a")
    assert tap.feed(first[:10]) == b""
    assert tap.feed(first[10:]) == first


def test_spaced_json_and_multiline_data() -> None:
    spaced = STREAM.replace(b'"usage":{', b'"usage": {').replace(b'"usage":null', b'"usage": null')
    tap = SseTap(strip_usage_chunk=True)
    assert b'"choices":[]' not in run(tap, [spaced])
    assert tap.usage is not None and tap.usage.prompt_tokens == 7
    split = (
        b'data: {"choices": [],\ndata: "usage": {"prompt_tokens": 5, "completion_tokens": 1}}\n\n'
    )
    tap = SseTap(strip_usage_chunk=True)
    assert run(tap, [chunk("a") + split]) == chunk("a")
    assert tap.usage is not None and tap.usage.total_tokens == 6


def test_the_latest_usage_wins_and_every_usage_chunk_goes() -> None:
    later = USAGE.replace(b'"completion_tokens":3', b'"completion_tokens":4')
    tap = SseTap(strip_usage_chunk=True)
    assert run(tap, [chunk("a") + USAGE + chunk("b") + later]) == chunk("a") + chunk("b")
    assert tap.usage is not None and tap.usage.completion_tokens == 4


def test_many_usage_chunks_in_one_read_are_cut_in_one_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hostile upstream may pack a read with usage-only chunks: dropping each must not copy
    the whole read again (quadratic in the read's size)."""
    searched: list[bytes] = []
    last_usage = sse._last_usage

    def recorded(data: bytes, end: int) -> int:
        searched.append(data)  # kept: a freed copy's id could be reused
        return last_usage(data, end)

    monkeypatch.setattr(sse, "_last_usage", recorded)
    tap = SseTap(strip_usage_chunk=True)
    read = (chunk("a") + USAGE) * 500 + chunk("b")
    assert tap.feed(read) == chunk("a") * 500 + chunk("b")
    assert len({id(data) for data in searched}) == 1
    assert tap.usage is not None and tap.usage.total_tokens == 10


def test_crlf_events() -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    tap = SseTap(strip_usage_chunk=True)
    out = run(tap, [crlf[:50], crlf[50:]])
    assert b'"choices":[]' not in out and out.endswith(b"data: [DONE]\r\n\r\n")
    assert tap.usage is not None


def test_responses_api_usage_is_read_never_dropped() -> None:
    completed = event({"type": "response.completed",
                       "response": {"usage": {"input_tokens": 4, "output_tokens": 5}}})  # fmt: skip
    tap = SseTap(strip_usage_chunk=True)
    assert run(tap, [completed]) == completed
    assert tap.usage is not None and (tap.usage.prompt_tokens, tap.usage.completion_tokens) == (
        4,
        5,
    )


def test_streamed_text_recovers_content() -> None:
    delta = event({"type": "response.output_text.delta", "delta": " world"})
    legacy = event({"choices": [{"text": "?"}]})
    assert streamed_text([STREAM, delta, legacy, b"data: [DONE]\n\n", b"data: {bad\n\n"]) == (
        "Hello! world?"
    )


def test_the_text_streamed_is_kept_folded_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream without a usage event is charged for the text it sent: kept as text (folded
    out of the events as they pile up), never more than the cap of it."""
    monkeypatch.setattr(sse, "_FOLD_BYTES", 500)
    monkeypatch.setattr(sse, "_MAX_CHARS", 1_000)
    kept = sse.StreamedText()
    words = [f"w{i:03d} " for i in range(400)]  # 2,000 characters in 400 events
    for word in words:
        kept.add(chunk(word))
    assert kept.text() == "".join(words)[:1_000]
    few = sse.StreamedText()
    for word in words[:10]:
        few.add(chunk(word))
    assert few.text() == streamed_text([chunk(w) for w in words[:10]]) == "".join(words[:10])


def test_an_lf_line_ended_by_a_crlf_blank_line_ends_its_event() -> None:
    """Mixed line ends: the event is released when its end arrives, as the stream guard and
    streamed_text read it, not held until a later end."""
    tap = SseTap(strip_usage_chunk=False)
    first = b"data: " + orjson.dumps({"choices": []}) + b"\n\r\n"
    assert tap.feed(first) == first
    assert tap.feed(b"data: [DONE]\r\n\r\n") == b"data: [DONE]\r\n\r\n"
