"""Extraction: every text of each operation's request and answer, hostile shapes skipped
without an error, and redactions written back at the same paths without touching the rest."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from keyguard.guard.engine import GuardEngine
from keyguard.guard.extract import request_slots, response_slots, with_replacements
from keyguard.guard.findings import Slot
from keyguard.scan import testkeys


def _texts(slots: list[Slot]) -> list[tuple[tuple[str | int, ...], str, str]]:
    return [(s.path, s.role, s.text) for s in slots]


# --- hostile shapes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": "hello"},
        {"messages": [None, 1, "x", [], {"content": 5}, {"content": [None, 3, {"text": 4}]}]},
        {"messages": [{"role": {"x": 1}, "content": "hi", "tool_calls": "nope"}]},
        {"messages": [{"role": "assistant", "tool_calls": [None, {"function": "f"}]}]},
        {"input": [[1, 2, 3], {"type": "function_call_output", "output": {"a": 1}}]},
        {"prompt": [[1, 2], [3]], "input": [1, 2, 3]},
        {"choices": [None, {"message": None}, {"message": {"content": 7}}], "output": "x"},
    ],
)
@pytest.mark.parametrize("op", ["chat", "completions", "responses", "embeddings", "unknown"])
def test_unexpected_shapes_are_skipped_never_raised(body: dict[str, Any], op: str) -> None:
    for slot in request_slots(op, body) + response_slots(op, body):
        assert isinstance(slot.text, str)


def test_deeply_nested_json_is_not_walked() -> None:
    deep: Any = "x"
    for _ in range(50_000):
        deep = [deep]
    body = {"messages": [{"role": "user", "content": deep}]}
    assert request_slots("chat", body) == []


def test_many_tiny_parts_are_scanned_in_batches_and_a_split_key_is_found() -> None:
    key = testkeys.openai_key()
    parts = [{"type": "text", "text": key[i : i + 3]} for i in range(0, len(key), 3)]
    noise = [{"type": "text", "text": "ok "} for _ in range(20_000)]
    body = {"messages": [{"role": "user", "content": noise + parts}]}
    slots = request_slots("chat", body)
    found = GuardEngine().scan_slots(slots)
    hit = {s.path[3] for s, m in found if m.category == "openai_key"}
    assert hit == set(range(20_000, 20_000 + len(parts)))


def test_texts_of_different_messages_are_not_joined() -> None:
    key = testkeys.openai_key()
    body = {
        "messages": [
            {"role": "user", "content": key[:60]},
            {"role": "user", "content": key[60:]},
        ]
    }
    assert GuardEngine().scan_slots(request_slots("chat", body)) == []


# --- what is read ----------------------------------------------------------------------------


def test_chat_request() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "developer", "content": "dev"},
            {"role": "user", "name": "alice", "content": [
                {"type": "text", "text": "part"},
                {"type": "image_url", "image_url": {"url": "data:..."}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "result"},
            {"role": "function", "name": "g", "content": "legacy"},
            {"role": "assistant", "function_call": {"name": "g", "arguments": '{"a":1}'}},
        ],
        "prediction": {"type": "content", "content": "predicted"},
    }  # fmt: skip
    assert _texts(request_slots("chat", body)) == [
        (("messages", 0, "content"), "system", "sys"),
        (("messages", 1, "content"), "developer", "dev"),
        (("messages", 2, "content", 0, "text"), "user", "part"),
        (("messages", 2, "name"), "user", "alice"),
        (("messages", 3, "tool_calls", 0, "function", "arguments"), "tool_call", "{}"),
        (("messages", 4, "content"), "tool", "result"),
        (("messages", 5, "content"), "tool", "legacy"),
        (("messages", 5, "name"), "tool", "g"),
        (("messages", 6, "function_call", "arguments"), "tool_call", '{"a":1}'),
        (("prediction", "content"), "assistant", "predicted"),
    ]


def test_completions_embeddings_images_speech() -> None:
    assert _texts(request_slots("completions", {"prompt": ["a", [1, 2], "b"], "suffix": "s"})) == [
        (("prompt", 0), "user", "a"),
        (("prompt", 2), "user", "b"),
        (("suffix",), "user", "s"),
    ]
    assert _texts(request_slots("embeddings", {"input": "x"})) == [(("input",), "input", "x")]
    assert request_slots("embeddings", {"input": [[1, 2], [3]]}) == []
    assert _texts(request_slots("images", {"prompt": "p"})) == [(("prompt",), "user", "p")]
    assert _texts(request_slots("speech", {"input": "i"})) == [(("input",), "user", "i")]


def test_responses_request() -> None:
    body = {
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": "plain"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "t"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "tool says"},
            {"type": "reasoning", "summary": []},
        ],
    }
    assert _texts(request_slots("responses", body)) == [
        (("instructions",), "developer", "be brief"),
        (("input", 0, "content"), "user", "plain"),
        (("input", 1, "content", 0, "text"), "user", "t"),
        (("input", 2, "arguments"), "tool_call", "{}"),
        (("input", 3, "output"), "tool", "tool says"),
    ]
    assert _texts(request_slots("responses", {"input": "hi"})) == [(("input",), "user", "hi")]


def test_answers() -> None:
    chat = {"choices": [{"message": {"role": "assistant", "content": "answer", "tool_calls": [
        {"function": {"name": "f", "arguments": '{"q": 1}'}}]}}]}  # fmt: skip
    assert _texts(response_slots("chat", chat)) == [
        (("choices", 0, "message", "content"), "completion", "answer"),
        (("choices", 0, "message", "tool_calls", 0, "function", "arguments"), "tool_call",
         '{"q": 1}'),
    ]  # fmt: skip
    assert _texts(response_slots("completions", {"choices": [{"text": "t"}]})) == [
        (("choices", 0, "text"), "completion", "t")
    ]
    responses = {"output": [
        {"type": "reasoning", "summary": []},
        {"type": "message", "content": [{"type": "output_text", "text": "o"}]},
        {"type": "function_call", "arguments": "{}"},
    ]}  # fmt: skip
    assert _texts(response_slots("responses", responses)) == [
        (("output", 1, "content", 0, "text"), "completion", "o"),
        (("output", 2, "arguments"), "tool_call", "{}"),
    ]


# --- replacements ----------------------------------------------------------------------------


def test_with_replacements_copies_only_what_changes() -> None:
    body: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "secret here"}]},
            {"role": "user", "content": "untouched"},
        ],
        "temperature": 0,
    }
    before = copy.deepcopy(body)
    out = with_replacements(body, {("messages", 0, "content", 0, "text"): "[REDACTED]"})
    assert body == before
    assert out["messages"][0]["content"][0]["text"] == "[REDACTED]"
    assert out["messages"][1] is body["messages"][1]
    assert json.loads(json.dumps(out))["temperature"] == 0


@pytest.mark.parametrize(
    "path",
    [("messages", 5, "content"), ("messages", 0, "nope"), ("messages", "0"), ("messages",), ()],
)
def test_with_replacements_refuses_a_path_that_is_not_a_text(
    path: tuple[str | int, ...],
) -> None:
    body = {"messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(ValueError):
        with_replacements(body, {path: "y"})
