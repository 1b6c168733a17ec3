"""Chat, completions and Responses API through the official openai SDK over loopback."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest

from keyguard.emulator import EmulatorConfig, RunningEmulator, count_tokens
from tests.support.emulators import CHAT_PATH

from .conftest import MESSAGES

# 3 per message + content tokens ("Be brief." = 3, "Hello, world!" = 4) + 3 priming
EXPECTED_PROMPT_TOKENS = 3 + 3 + 3 + 4 + 3


async def test_chat_non_streaming(azure: openai.AsyncAzureOpenAI) -> None:
    answer = await azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert answer.object == "chat.completion"
    assert answer.model == "gpt-4o-2024-11-20"
    assert answer.id.startswith("chatcmpl-")
    assert answer.system_fingerprint and answer.system_fingerprint.startswith("fp_")
    choice = answer.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    text = choice.message.content or ""
    usage = answer.usage
    assert usage is not None
    assert usage.prompt_tokens == EXPECTED_PROMPT_TOKENS
    assert usage.completion_tokens == 20 == count_tokens(text)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details
    assert usage.completion_tokens_details.reasoning_tokens == 0
    extra = answer.model_extra or {}
    assert extra["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert (choice.model_extra or {})["content_filter_results"]["violence"]["severity"] == "safe"


async def test_chat_is_deterministic_and_respects_max_tokens(
    azure: openai.AsyncAzureOpenAI,
) -> None:
    first = await azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    second = await azure.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert first.choices[0].message.content == second.choices[0].message.content
    short = await azure.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        max_tokens=5,
    )
    assert short.usage is not None and short.usage.completion_tokens == 5
    assert short.choices[0].finish_reason == "length"
    newer = await azure.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        max_completion_tokens=7,
        n=2,
    )
    assert len(newer.choices) == 2
    assert newer.usage is not None and newer.usage.completion_tokens == 14


async def _stream_chunks(client: openai.AsyncAzureOpenAI, **options: Any) -> list[dict[str, Any]]:
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        **options,
    )
    return [chunk.model_dump(exclude_unset=True) async for chunk in stream]


async def test_chat_streaming_with_usage_matches_non_streaming(
    azure: openai.AsyncAzureOpenAI,
) -> None:
    plain = await azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    chunks = await _stream_chunks(azure, stream_options={"include_usage": True})
    first, role, *content, final, usage_chunk = chunks
    assert first["choices"] == [] and first["prompt_filter_results"]
    assert first["usage"] is None
    assert role["choices"][0]["delta"]["role"] == "assistant"
    assert role["object"] == "chat.completion.chunk"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert all(c["choices"][0]["content_filter_results"]["hate"] for c in content)
    assert final["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"] == []
    text = "".join(c["choices"][0]["delta"]["content"] for c in content)
    assert text == plain.choices[0].message.content
    assert len(content) == 20
    assert plain.usage is not None
    assert usage_chunk["usage"] == plain.usage.model_dump(exclude_unset=True)


async def test_chat_streaming_without_usage(azure: openai.AsyncAzureOpenAI) -> None:
    chunks = await _stream_chunks(azure)
    assert "usage" not in chunks[-1]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)


async def test_stream_wire_format(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    body = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    async with http.post(
        emulator.url + CHAT_PATH, json=body, headers={"api-key": emulator.keys()[0]}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = await response.read()
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    for event in events[:-2]:
        assert event.startswith(b"data: {")
        orjson.loads(event[len(b"data: ") :])


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(stream_delay=0.05)])
async def test_paced_stream_flushes_the_first_chunk_at_once(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    body = {"messages": MESSAGES, "stream": True, "max_tokens": 3}
    async with http.post(
        emulator.url + CHAT_PATH, json=body, headers={"api-key": emulator.keys()[0]}
    ) as response:
        first = await response.content.readuntil(b"\n\n")
        assert b'"prompt_filter_results"' in first
        rest = await response.read()
    assert rest.endswith(b"data: [DONE]\n\n")


async def test_completions(azure: openai.AsyncAzureOpenAI) -> None:
    answer = await azure.completions.create(model="gpt-4o", prompt="Once upon a time", max_tokens=8)
    assert answer.object == "text_completion"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 4 and answer.usage.completion_tokens == 8
    assert count_tokens(answer.choices[0].text) == 8
    stream = await azure.completions.create(
        model="gpt-4o",
        prompt="Once upon a time",
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == answer.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12
    batch = await azure.completions.create(model="gpt-4o", prompt=["a b", "c"], max_tokens=2)
    assert len(batch.choices) == 2 and batch.usage is not None
    assert batch.usage.prompt_tokens == 3


async def test_responses_legacy_and_v1(emulator: RunningEmulator, v1: openai.AsyncOpenAI) -> None:
    legacy = openai.AsyncAzureOpenAI(
        azure_endpoint=emulator.url,
        api_key=emulator.keys()[0],
        api_version="2025-04-01-preview",
        max_retries=0,
    )
    async with legacy:
        answer = await legacy.responses.create(
            model="gpt-4o", input="Tell me a story", instructions="Be short."
        )
    assert answer.object == "response" and answer.status == "completed"
    assert answer.usage is not None
    # instructions 3 + 3, input 3 + 4, priming 3
    assert answer.usage.input_tokens == 16
    assert answer.usage.output_tokens == 20 == count_tokens(answer.output_text)
    assert answer.usage.total_tokens == 36
    same = await v1.responses.create(
        model="gpt-4o-mini", input="Tell me a story", instructions="Be short."
    )
    assert same.output_text == answer.output_text
    cut = await v1.responses.create(model="gpt-4o", input="x", max_output_tokens=16)
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"


async def test_responses_streaming(v1: openai.AsyncOpenAI) -> None:
    plain = await v1.responses.create(
        model="gpt-4o", input=[{"role": "user", "content": "Stream please"}]
    )
    stream = await v1.responses.create(
        model="gpt-4o", input=[{"role": "user", "content": "Stream please"}], stream=True
    )
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == plain.output_text
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage == plain.usage


async def test_v1_chat_and_models(v1: openai.AsyncOpenAI) -> None:
    answer = await v1.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert answer.usage is not None and answer.usage.prompt_tokens == EXPECTED_PROMPT_TOKENS
    models = [m.id async for m in v1.models.list()]
    assert "gpt-4o-2024-11-20" in models and "text-embedding-3-small" in models


async def test_chat_validation_errors(azure: openai.AsyncAzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as missing:
        await azure.chat.completions.create(model="gpt-4o", messages=[])
    assert missing.value.status_code == 400
    with pytest.raises(openai.BadRequestError) as bad_max:
        await azure.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            max_tokens=0,
        )
    assert bad_max.value.param == "max_tokens"
