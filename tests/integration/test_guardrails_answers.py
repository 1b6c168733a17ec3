"""The guardrails on answers and streams, end to end through the official SDK.

The emulator is scripted to answer with a secret, whole or split across stream chunks. A
blocked answer ends as Azure ends a filtered one (``finish_reason: "content_filter"``), and no
piece of the value reaches the client; a redacted one carries the placeholder; with
``restore``, the request's own placeholders come back as the caller's values, even split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from keyguard.emulator import RunningEmulator
from tests.support.logs import LogCapture

from .guardrails_support import audit_rows, canary, guarded_gateway, nowhere, received

pytestmark = pytest.mark.filterwarnings("error")

ASK: Any = [{"role": "user", "content": "print the config"}]


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def _stream(client: Any, **kwargs: Any) -> tuple[str, list[str | None]]:
    text: list[str] = []
    finishes: list[str | None] = []
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=kwargs.pop("messages", ASK), stream=True, **kwargs
    )
    async for chunk in stream:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finishes.append(choice.finish_reason)
    return "".join(text), finishes


async def test_a_secret_split_across_stream_chunks_is_cut_before_its_last_piece(
    tmp_path: Path, emulator: RunningEmulator, logs: LogCapture
) -> None:
    secret = canary()
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, key = await gw.new_key("strict-app")
        emulator.state.script_answer("Here it is: ", *_split(secret, 7), " and more text.")
        async with gw.azure(key) as client:
            text, finishes = await _stream(client)
            # the same key, the next stream clean: nothing held for good
            emulator.state.script_answer(*_split("nothing secret here at all. " * 20, 5))
            clean, clean_finishes = await _stream(client)
        assert gw.gateway.monitoring is not None
        await gw.gateway.monitoring.recorder.drain()
        rows = audit_rows(tmp_path)
    assert finishes[-1] == "content_filter"
    assert nowhere(secret, [text]), "a piece of the secret reached the client"
    assert clean == "nothing secret here at all. " * 20 and clean_finishes[-1] == "stop"
    assert nowhere(secret, logs.lines) and nowhere(secret, rows)
    assert any('"where":"answer"' in row and '"action":"block"' in row for row in rows)


async def test_a_blocked_answer_is_filtered_as_azure_filters_an_output(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    secret = canary()
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, key = await gw.new_key("strict-app")
        emulator.state.script_answer(f"The key is {secret}.")
        async with gw.azure(key) as client:
            answer = await client.chat.completions.create(model="gpt-4o", messages=ASK)
    choice = answer.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content == ""
    assert nowhere(secret, [answer.model_dump_json()])


async def test_an_answer_is_redacted_in_a_stream_even_when_the_value_is_split(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    secret = canary()
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, key = await gw.new_key("mask-app")
        emulator.state.script_answer("Key: ", *_split(secret, 9), " done.")
        async with gw.azure(key) as client:
            text, finishes = await _stream(client)
        emulator.state.script_answer("Key: ", secret, " done.")
        async with gw.azure(key) as client:
            whole = await client.chat.completions.create(model="gpt-4o", messages=ASK)
    assert text == "Key: [AZURE_OPENAI_KEY_1] done." and finishes[-1] == "stop"
    assert whole.choices[0].message.content == "Key: [AZURE_OPENAI_KEY_1] done."


async def test_restore_puts_the_callers_value_back_into_a_split_stream(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    secret = canary()
    messages: Any = [{"role": "user", "content": f"keep {secret} safe"}]
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, key = await gw.new_key("redact-app")
        emulator.state.script_answer(
            "You gave [AZURE_", "OPENAI_K", "EY_1] and [AZURE_OPENAI_KEY_9]."
        )
        async with gw.azure(key) as client:
            text, _ = await _stream(client, messages=messages)
    assert text == f"You gave {secret} and [AZURE_OPENAI_KEY_9]."  # only its own placeholders
    assert nowhere(secret, [received(emulator)])


async def test_a_long_clean_stream_passes_whole_and_in_order(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    words = [f"word{i} " for i in range(600)]
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, key = await gw.new_key("strict-app")
        emulator.state.script_answer(*words)
        async with gw.azure(key) as client:
            text, finishes = await _stream(client, stream_options={"include_usage": True})
    assert text == "".join(words) and finishes[-1] == "stop"


async def _responses(
    tmp_path: Path, emulator: RunningEmulator, app: str, whole: list[str], streamed: list[str]
) -> tuple[Any, list[Any]]:
    """A Responses API answer scripted as ``whole``, then one streamed in ``streamed`` pieces,
    through the gateway as ``app`` (the SDK's response and stream events)."""
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, key = await gw.new_key(app)
        async with gw.v1(key) as client:
            emulator.state.script_answer(*whole)
            answer = await client.responses.create(model="gpt-4o", input="print the config")
            emulator.state.script_answer(*streamed)
            stream = await client.responses.create(
                model="gpt-4o", input="print the config", stream=True
            )
            return answer, [event async for event in stream]


async def test_a_responses_answer_is_redacted_whole_and_streamed_in_every_event(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    secret = canary()
    whole, stream = await _responses(
        tmp_path, emulator, "mask-app", ["Key: ", secret, " done."],
        ["Key: ", *_split(secret, 9), " done."],
    )  # fmt: skip
    events = [event.model_dump_json() for event in stream]
    assert whole.output_text == "Key: [AZURE_OPENAI_KEY_1] done."
    assert nowhere(secret, [whole.model_dump_json(), *events])
    kinds = [orjson.loads(e)["type"] for e in events]
    assert kinds[-1] == "response.completed" and "response.output_text.done" in kinds
    done = orjson.loads(events[kinds.index("response.output_text.done")])
    assert done["text"] == "Key: [AZURE_OPENAI_KEY_1] done."
    final = orjson.loads(events[-1])["response"]["output"][0]["content"][0]["text"]
    assert final == "Key: [AZURE_OPENAI_KEY_1] done."


async def test_a_blocked_responses_answer_is_incomplete_and_its_stream_ends_in_an_error(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    secret = canary()
    whole, events = await _responses(
        tmp_path, emulator, "strict-app", [f"The key is {secret}."],
        ["The key is ", *_split(secret, 7), "."],
    )  # fmt: skip
    assert whole.status == "incomplete" and whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "content_filter" and whole.output == []
    assert events[-1].type == "error" and getattr(events[-1], "code", None) == "content_filter"
    assert nowhere(secret, [whole.model_dump_json(), *(e.model_dump_json() for e in events)])
