"""The hold-back window over a streamed answer (pure): values split across chunks judged whole
before their last piece is sent, redaction and restore across events, order kept, memory bounded."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from keyguard.errors import UpstreamTooLarge
from keyguard.guard.decide import Placeholders
from keyguard.guard.findings import Match
from keyguard.policy.guardrails import Effective, GuardActions
from keyguard.proxy.guard_stream import StreamGuard

SECRET = "SECRET-" + "0123456789" * 4


def scan(text: str) -> list[Match]:
    return [
        Match("secret", "test_key", "test", m.start(), m.end())
        for m in re.finditer(r"SECRET-[0-9]+", text)
    ]


def chunk(content: str | None = None, finish: str | None = None, index: int = 0) -> bytes:
    delta: dict[str, Any] = {} if content is None else {"content": content}
    obj = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "created": 1,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def guard(
    action: str = "block",
    window: int = 64,
    restore: dict[str, str] | None = None,
    max_held_bytes: int = 128 << 20,
) -> Any:
    return StreamGuard(
        scan,
        Effective([GuardActions(secret=action)]),
        lambda v: "fp",
        placeholders=Placeholders(),
        restore=restore,
        window=window,
        context=128,
        max_held_bytes=max_held_bytes,
    )


def texts(data: bytes) -> tuple[str, list[str | None]]:
    out, finishes = [], []
    for line in data.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in orjson.loads(line[6:])["choices"]:
                out.append(choice["delta"].get("content") or "")
                finishes.append(choice["finish_reason"])
    return "".join(out), finishes


def run(g: StreamGuard, events: list[bytes]) -> tuple[bytes, list[bytes]]:
    """Feed one event at a time; returns everything sent and what each feed sent."""
    sent = [g.feed(e) for e in events]
    sent.append(g.flush(b""))
    return b"".join(sent), sent


def test_a_split_secret_is_cut_before_its_last_piece_and_the_stream_ends_as_azure_does() -> None:
    pieces = ["Here: "] + [SECRET[i : i + 5] for i in range(0, len(SECRET), 5)] + [" more"]
    g = guard()
    out, _ = run(g, [chunk("")] + [chunk(p) for p in pieces] + [chunk(finish="stop")])
    text, finishes = texts(out)
    assert SECRET[:12] not in text and finishes[-1] == "content_filter"
    assert out.endswith(b"data: [DONE]\n\n") and g.cut
    assert g.blocked is not None and g.blocked.category == "test_key"
    assert g.feed(chunk("after")) == b""  # nothing more once cut


def test_clean_text_is_released_once_past_the_window_in_order() -> None:
    g = guard(window=16)
    words = [f"word{i} " for i in range(40)]
    out, sent = run(g, [chunk(w) for w in words] + [chunk(finish="stop"), b"data: [DONE]\n\n"])
    text, finishes = texts(out)
    assert text == "".join(words) and finishes[-1] == "stop" and out.endswith(b"[DONE]\n\n")
    assert sent[0] == b"" and any(sent[1:-1])  # held at first, released while streaming
    assert not g.cut and g.hits == []


def test_redaction_across_events_puts_the_placeholder_where_the_value_began() -> None:
    g = guard("redact")
    pieces = ["key ", SECRET[:10], SECRET[10:30], SECRET[30:], " end"]
    out, _ = run(g, [chunk(p) for p in pieces] + [chunk(finish="stop")])
    text, finishes = texts(out)
    assert text == "key [TEST_KEY_1] end" and finishes[-1] == "stop"
    assert [h.action for h in g.hits] == ["redact"]


def test_restore_of_a_split_placeholder_and_only_this_requests() -> None:
    g = guard(restore={"[EMAIL_1]": "ann@contoso.com"})
    out, _ = run(g, [chunk("to [EMA"), chunk("IL_1] and [EMAIL_2]"), chunk(finish="stop")])
    assert texts(out)[0] == "to ann@contoso.com and [EMAIL_2]"


def test_a_value_still_growing_is_not_judged_early() -> None:
    g = guard("redact", window=16)
    out, _ = run(g, [chunk("x" * 40), chunk("SECRET-01"), chunk("23456789" * 4), chunk(" ok")])
    assert texts(out)[0] == "x" * 40 + "[TEST_KEY_1] ok"
    assert len(g.hits) == 1


def test_choices_are_followed_apart_and_events_without_text_keep_their_place() -> None:
    g = guard("redact", window=16)
    events = [
        chunk("a" * 30, index=0),
        chunk(SECRET[:20], index=1),
        chunk("b" * 30, index=0),
        chunk(SECRET[20:], index=1),
        chunk(finish="stop", index=0),
        chunk(finish="stop", index=1),
    ]
    out, _ = run(g, events)
    by_choice: dict[int, str] = {}
    for line in out.split(b"\n"):
        if line.startswith(b"data: {"):
            choice = orjson.loads(line[6:])["choices"][0]
            by_choice[choice["index"]] = by_choice.get(choice["index"], "") + (
                choice["delta"].get("content") or ""
            )
    assert by_choice == {0: "a" * 30 + "b" * 30, 1: "[TEST_KEY_1]"}


def test_a_long_stream_keeps_bounded_text() -> None:
    g = guard(window=32)
    for i in range(3000):
        g.feed(chunk(f"token{i} "))
    text = g._texts[(0, -1)]
    assert len(text.text) <= 32 + 128 * 6 + 256 + 64
    assert g.flush(b"")


def test_hostile_events_are_passed_or_ignored_never_an_error() -> None:
    g = guard()
    odd = [
        b"data: {not json\n\n",
        b'data: {"choices": "nope"}\n\n',
        b'data: {"choices": [1, {"index": -5, "delta": {"content": 7}}]}\n\n',
        b'data: {"choices": [{"index": 99999999, "delta": {"tool_calls": [{"function": {}}]}}]}'
        b"\n\n",
        b": comment\n\n",
    ]
    out, _ = run(g, odd)
    assert out == b"".join(odd)


def test_a_responses_stream_is_ended_with_an_error_event() -> None:
    def delta(text: str) -> bytes:
        obj = {"type": "response.output_text.delta", "output_index": 0, "delta": text}
        return b"event: response.output_text.delta\ndata: " + orjson.dumps(obj) + b"\n\n"

    g = guard()
    out, _ = run(g, [delta("key "), delta(SECRET[:20]), delta(SECRET[20:]), delta(" end")])
    assert SECRET[:10].encode() not in out
    assert b'"type":"error"' in out and b'"code":"content_filter"' in out and g.cut


def test_a_redacted_event_keeps_its_event_line() -> None:
    obj = {"type": "response.output_text.delta", "output_index": 0, "delta": f"k {SECRET} ."}
    raw = b"event: response.output_text.delta\ndata: " + orjson.dumps(obj) + b"\n\n"
    out, _ = run(guard("redact"), [raw])
    assert out.startswith(b"event: response.output_text.delta\ndata: {")
    assert b"[TEST_KEY_1]" in out and SECRET.encode() not in out


def test_an_event_that_is_not_json_is_read_as_it_is_never_sent_unread() -> None:
    broken = b'data: {"choices":[{"delta":{"content":"' + SECRET.encode() + b'"}}\n\n'
    g = guard()
    out, _ = run(g, [chunk("a"), broken, chunk("b")])
    assert SECRET[:12].encode() not in out and g.cut
    assert b'"finish_reason":"content_filter"' in out
    g = guard("redact")
    out, _ = run(g, [chunk("a"), b"data: " + SECRET.encode() + b" trailing\n\n", chunk("b")])
    assert SECRET[:12].encode() not in out  # it cannot be edited: dropped
    assert texts(out)[0] == "ab" and [h.action for h in g.hits] == ["redact"]


def test_refusals_and_function_call_arguments_are_read() -> None:
    def delta(**fields: Any) -> bytes:
        obj = {"id": "c", "choices": [{"index": 0, "delta": fields, "finish_reason": None}]}
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    for fields in ({"refusal": f"no {SECRET}"}, {"function_call": {"arguments": SECRET}}):
        g = guard()
        out, _ = run(g, [delta(**fields)])
        assert SECRET[:12].encode() not in out and g.cut, fields


def responses_stream(text: str) -> list[bytes]:
    def event(kind: str, **fields: Any) -> bytes:
        obj = {"type": kind, "sequence_number": 1, **fields}
        return f"event: {kind}\ndata: ".encode() + orjson.dumps(obj) + b"\n\n"

    half = len(text) // 2
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"id": "msg_1", "type": "message", "role": "assistant", "content": [part]}
    return [
        event("response.created", response={"id": "resp_1", "status": "in_progress", "output": []}),
        event("response.output_text.delta", output_index=0, item_id="msg_1", delta=text[:half]),
        event("response.output_text.delta", output_index=0, item_id="msg_1", delta=text[half:]),
        event("response.output_text.done", output_index=0, item_id="msg_1", text=text),
        event("response.content_part.done", output_index=0, item_id="msg_1", part=part),
        event("response.output_item.done", output_index=0, item=item),
        event("response.completed", response={"id": "resp_1", "output": [item]}),
    ]


def test_a_responses_stream_is_redacted_in_its_closing_events_too_and_noted_once() -> None:
    g = guard("redact")
    out, _ = run(g, responses_stream(f"the key is {SECRET} here"))
    assert SECRET[:12].encode() not in out
    assert out.count(b"[TEST_KEY_1]") == 5  # the deltas and the four events repeating the text
    assert out.count(b"event: response.") == 7
    assert [(h.action, h.category) for h in g.hits] == [("redact", "test_key")]


def test_a_value_only_in_a_closing_responses_event_cuts_the_stream() -> None:
    g = guard()
    events = responses_stream("harmless")
    events.insert(3, responses_stream(SECRET)[-1])  # a completed event carrying another text
    out, _ = run(g, events)
    assert SECRET[:12].encode() not in out and g.cut and b'"type":"error"' in out
    restored = guard("block", restore={"[EMAIL_1]": "ann@example.com"})
    out, _ = run(restored, responses_stream("mail [EMAIL_1] now"))
    assert out.count(b"ann@example.com") == 5 and b"[EMAIL_1]" not in out


def test_events_piled_behind_held_text_stop_at_the_cap_and_none_of_a_value_is_sent() -> None:
    """Events without text wait behind a held text: an upstream sending them without end
    meets ``max_held_bytes``; what is held is then judged as the stream's end (a value's start
    is a value: blocked, none of it sent)."""
    g = guard(max_held_bytes=50_000)
    g.feed(chunk(""))
    assert g.feed(chunk("see " + SECRET[:20])) == b""  # held: within the window
    filler = chunk(None).replace(b'"delta":{}', b'"delta":{},"pad":"' + b"x" * 9_000 + b'"')
    fed = 0
    with pytest.raises(UpstreamTooLarge):
        for _ in range(10):
            assert g.feed(filler) == b""
            fed += 1
    assert fed == 5  # the sixth passed 50,000 bytes held
    out = g.flush(b"")
    sent, finishes = texts(out)
    assert SECRET[:7] not in sent and finishes[-1] == "content_filter"


def test_held_events_given_back_are_no_longer_counted() -> None:
    """The cap counts what is held, not what passed: a long clean stream never meets it."""
    g = guard(max_held_bytes=10_000)
    sent = b"".join(g.feed(chunk(f"word{i} ")) for i in range(2_000)) + g.flush(b"")
    assert texts(sent)[0] == "".join(f"word{i} " for i in range(2_000))
