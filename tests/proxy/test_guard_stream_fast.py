"""The stream guard's bytes-only reading of plain text chunks: it must judge exactly what the
parsed reading judges, whatever the chunk's key order, and fall back or fail closed otherwise.

Hostile cases: text that spells the keys the search looks for (``"content":"``, ``"index":``),
escapes and control characters, two choices interleaved, a chunk whose JSON is broken but
whose shape looks plain (an edit cannot be applied: the event is dropped, never sent raw)."""

from __future__ import annotations

from typing import Any

import orjson

from .test_guard_stream import SECRET, chunk, guard, run, texts


def azure_chunk(content: str, index: int = 0) -> bytes:
    """Azure's key order: filter results first, the choice's index near its end."""
    obj: dict[str, Any] = {
        "choices": [
            {
                "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
                "delta": {"content": content},
                "finish_reason": None,
                "index": index,
                "logprobs": None,
            }
        ],
        "created": 1,
        "id": "chatcmpl-2",
        "model": "gpt-4o",
        "object": "chat.completion.chunk",
        "system_fingerprint": "fp_1",
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def refusal_chunk(content: str) -> bytes:
    """A delta with another key: read by parsing."""
    return chunk(content).replace(b'"delta":{', b'"delta":{"refusal":null,')


def pieces_of(value: str, size: int = 7) -> list[str]:
    return [value[i : i + size] for i in range(0, len(value), size)]


def test_both_key_orders_redact_a_split_value_as_the_parsed_reading_does() -> None:
    pieces = ["key ", *pieces_of(SECRET), " end"]
    results = []
    for make in (chunk, azure_chunk, refusal_chunk):
        g = guard("redact")
        out, _ = run(g, [chunk("")] + [make(p) for p in pieces] + [chunk(finish="stop")])
        results.append((texts(out)[0], [h.action for h in g.hits]))
    assert results[0] == results[1] == results[2] == ("key [TEST_KEY_1] end", ["redact"])


def test_text_spelling_the_keys_is_only_text() -> None:
    hostile = ['"content":"x", "index":5, "delta":{', "}]\n\ndata: {", *pieces_of(SECRET)]
    g = guard("redact")
    out, _ = run(g, [chunk("a")] + [chunk(p) for p in hostile] + [chunk(finish="stop")])
    text, _ = texts(out)
    assert text == "a" + "".join(hostile[:2]) + "[TEST_KEY_1]"
    assert SECRET not in out.decode()


def test_interleaved_choices_are_followed_apart() -> None:
    events = [chunk("", index=0), chunk("", index=1)]
    for i, piece in enumerate(pieces_of(SECRET)):
        events += [chunk(f"w{i} ", index=0), azure_chunk(piece, index=1)]
    g = guard("block")
    run(g, events)
    assert g.blocked is not None and g.blocked.category == "test_key"
    g = guard("redact")
    out, _ = run(g, events)
    by_choice: dict[int, str] = {}
    for line in out.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in orjson.loads(line[6:])["choices"]:
                text = choice["delta"].get("content") or ""
                by_choice[choice["index"]] = by_choice.get(choice["index"], "") + text
    assert by_choice[1] == "[TEST_KEY_1]" and by_choice[0].startswith("w0 w1 ")


def test_escaped_and_plain_pieces_of_one_value_are_joined() -> None:
    pieces = ['say "', SECRET[:9], SECRET[9:20] + "\n", "\t" + SECRET[20:], '" ok']
    # the value is cut by the newline: its two parts are two values, both found
    g = guard("redact")
    out, _ = run(g, [chunk(p) for p in pieces] + [chunk(finish="stop")])
    assert texts(out)[0] == 'say "[TEST_KEY_1]\n\t' + SECRET[20:] + '" ok'
    g = guard("redact")
    joined = ['say "', SECRET[:9], SECRET[9:] + '"', " ok"]
    out, _ = run(g, [chunk(p) for p in joined] + [chunk(finish="stop")])
    assert texts(out)[0] == 'say "[TEST_KEY_1]" ok'


def test_a_plain_looking_chunk_with_broken_json_is_dropped_when_it_must_be_edited() -> None:
    def broken(content: str) -> bytes:
        return chunk(content).replace(b'"finish_reason":null', b'"finish_reason":nul')

    g = guard("redact")
    out, _ = run(g, [chunk("x ")] + [broken(p) for p in pieces_of(SECRET)] + [chunk(" y")])
    assert SECRET[:7].encode() not in out and SECRET[-7:].encode() not in out
    assert [h.action for h in g.hits] == ["redact"]


def test_bad_bytes_in_a_chunk_never_raise() -> None:
    g = guard("redact")
    bad = [
        b'data: {"choices":[{"index":0,"delta":{"content":"\xff\xfe"}}]}\n\n',
        b'data: {"choices":[{"index":99999,"delta":{"content":"a"}}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"content":"a\x01b"}}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"content":"',
    ]
    run(g, [chunk("start")] + bad)
    assert not g.cut
