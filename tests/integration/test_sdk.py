"""The official openai SDK through the gateway to the emulator: both clients, every family."""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from keyguard.emulator import RunningEmulator
from tests.support.emulators import API_VERSION
from tests.support.gateway import azure_client, new_key, running_gateway

from .harness import GatewayHarness

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Tell me about zero trust."}
]


async def test_azure_client_chat(gateway: GatewayHarness, app_key: str) -> None:
    async with gateway.azure(app_key) as client:
        reply = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            max_tokens=12,
        )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 12


async def test_azure_client_with_deployment_in_the_endpoint(
    gateway: GatewayHarness, app_key: str
) -> None:
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=gateway.url,
        azure_deployment="gpt-4o-mini",
        api_key=app_key,
        api_version=API_VERSION,
        max_retries=0,
    )
    async with client:
        reply = await client.chat.completions.create(
            model="ignored-by-the-sdk",
            messages=MESSAGES,
        )
    assert reply.choices[0].message.content


async def test_v1_client_chat(gateway: GatewayHarness, app_key: str) -> None:
    async with gateway.v1(app_key) as client:
        reply = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            max_tokens=5,
        )
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens == 5


async def test_streaming_with_usage_matches_non_streaming(
    gateway: GatewayHarness, app_key: str
) -> None:
    async with gateway.azure(app_key) as client:
        plain = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            max_tokens=10,
        )
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            max_tokens=10,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage is not None:
                usage = chunk.usage
    assert text == plain.choices[0].message.content
    assert usage is not None and plain.usage is not None
    assert usage.total_tokens == plain.usage.total_tokens


async def test_v1_streaming(gateway: GatewayHarness, app_key: str) -> None:
    async with gateway.v1(app_key) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            max_tokens=4,
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 4
    assert all(c.usage is None for c in chunks)


async def test_embeddings_both_clients(gateway: GatewayHarness, app_key: str) -> None:
    async with gateway.azure(app_key) as azure, gateway.v1(app_key) as v1:
        a = await azure.embeddings.create(model="text-embedding-3-small", input="keyguard")
        b = await v1.embeddings.create(model="text-embedding-3-small", input="keyguard")
        c = await azure.embeddings.create(
            model="text-embedding-3-small",
            input=["a", "b"],
            encoding_format="float",
            dimensions=8,
        )
    assert len(a.data[0].embedding) == len(b.data[0].embedding) > 0
    assert a.data[0].embedding == b.data[0].embedding
    assert [len(d.embedding) for d in c.data] == [8, 8]


async def test_responses_both_families(gateway: GatewayHarness, app_key: str) -> None:
    async with gateway.v1(app_key) as v1:
        r1 = await v1.responses.create(model="gpt-4o", input="hello", max_output_tokens=16)
    azure = openai.AsyncAzureOpenAI(
        azure_endpoint=gateway.url,
        api_key=app_key,
        api_version="2025-04-01-preview",
        max_retries=0,
    )
    async with azure:
        r2 = await azure.responses.create(model="gpt-4o", input="hello", max_output_tokens=16)
    assert r1.output_text and r1.output_text == r2.output_text
    assert r1.usage is not None and r1.usage.output_tokens == 16


async def test_responses_streaming(gateway: GatewayHarness, app_key: str) -> None:
    async with gateway.v1(app_key) as v1:
        stream = await v1.responses.create(
            model="gpt-4o", input="hello", max_output_tokens=16, stream=True
        )
        kinds = [event.type async for event in stream]
    # 16 tokens is below the emulator's natural length: Azure reports the cut as incomplete.
    assert kinds[0] == "response.created" and kinds[-1] == "response.incomplete"
    assert kinds.count("response.output_text.delta") == 16


async def test_legacy_completions_images_audio(gateway: GatewayHarness, app_key: str) -> None:
    async with gateway.azure(app_key) as client:
        completion = await client.completions.create(model="gpt-4o", prompt="Hi", max_tokens=3)
        image = await client.images.generate(
            model="dall-e-3", prompt="a lock", response_format="b64_json"
        )
        transcript = await client.audio.transcriptions.create(
            model="whisper", file=("a.wav", b"RIFF0000WAVEfmt ", "audio/wav")
        )
        speech = await client.audio.speech.create(model="tts", voice="alloy", input="hi")
    assert completion.choices[0].text
    assert image.data and base64.b64decode(image.data[0].b64_json or "")[:4] == b"\x89PNG"
    assert transcript.text
    assert len(speech.content) > 0


async def test_models_lists_only_served_deployments(gateway: GatewayHarness, app_key: str) -> None:
    async with gateway.v1(app_key) as v1:
        models = [m.id async for m in v1.models.list()]
    assert "gpt-4o" in models and "text-embedding-3-small" in models


async def test_azure_response_headers_pass_through(gateway: GatewayHarness, app_key: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{gateway.url}/openai/deployments/gpt-4o/chat/completions",
            params={"api-version": API_VERSION},
            json={"messages": MESSAGES, "max_tokens": 2},
            headers={"api-key": app_key, "x-ms-client-request-id": "abc-123"},
        ) as resp:
            assert resp.status == 200
            headers = resp.headers
    for name in (
        "x-request-id",
        "apim-request-id",
        "x-ms-region",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-remaining-requests",
        "x-keyguard-request-id",
    ):
        assert name in headers, name
    assert headers["x-ms-client-request-id"] == "abc-123"


async def test_no_answer_names_the_http_stack_or_its_version(
    gateway: GatewayHarness, app_key: str
) -> None:
    chat = f"{gateway.url}/openai/deployments/gpt-4o/chat/completions"
    params = {"api-version": API_VERSION}
    body = {"messages": MESSAGES, "max_tokens": 2}
    seen = []
    async with aiohttp.ClientSession() as http:
        for headers, extra in (
            ({"api-key": app_key}, {}),  # relayed answer
            ({"api-key": app_key}, {"stream": True}),  # relayed stream
            ({"api-key": "not-a-key"}, {}),  # the gateway's own error
        ):
            async with http.post(chat, params=params, json=body | extra, headers=headers) as resp:
                await resp.read()
                seen.append((resp.status, resp.headers.get("server")))
        async with http.get(gateway.gateway.admin_url + "/healthz") as resp:
            seen.append((resp.status, resp.headers.get("server")))
    assert seen == [(200, "keyguard"), (200, "keyguard"), (401, "keyguard"), (200, "keyguard")]


async def test_an_answer_above_the_answer_cap_is_a_502_naming_the_setting(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """A misbehaving upstream cannot make the gateway hold an unbounded answer: past
    ``proxy.max_answer_bytes`` it is not read on, and the caller is told which setting."""
    async with running_gateway(tmp_path, emulator, proxy={"max_answer_bytes": 65536}) as gw:
        _, key = await new_key(gw)
        async with azure_client(gw, key) as client:
            small = await client.embeddings.create(model="text-embedding-3-small", input="a")
            with pytest.raises(openai.APIStatusError) as caught:
                await client.embeddings.create(
                    model="text-embedding-3-small", input=[f"text {i}" for i in range(64)]
                )
    assert small.data
    assert caught.value.status_code == 502
    assert "proxy.max_answer_bytes" in caught.value.message


async def test_a_body_of_several_megabytes_is_forwarded(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Above 1 MiB the body is streamed to Azure from a buffer (one write of it made aiohttp
    warn, which the test suite turns into an error: a 500). The guardrails read up to 1M
    characters of one text by default (a longer one is refused as unscanned: more than any
    model's context): here they read it all."""
    text = "lorem ipsum dolor sit amet " * (3 * 1024 * 1024 // 27)
    guardrails = {"max_text_chars": 4_000_000}
    async with running_gateway(tmp_path, emulator, guardrails=guardrails) as gw:
        _, key = await new_key(gw)
        async with azure_client(gw, key) as client:
            reply = await client.embeddings.create(model="text-embedding-3-small", input=text)
    assert reply.data and reply.usage.prompt_tokens > 100_000
