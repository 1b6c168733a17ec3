"""Odd and hostile input never yields a 500: Azure-shaped 4xx answers only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyguard.emulator import EmulatorConfig, RunningEmulator
from keyguard.emulator.chat import plan_chat, plan_completions
from keyguard.emulator.errors import AzureError
from keyguard.emulator.responses_api import plan_response
from tests.support.emulators import API_VERSION

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "messages",
        "prompt",
        "input",
        "instructions",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "n",
        "stream",
        "stream_options",
        "tools",
        "role",
        "content",
    ]
)
BODIES = st.dictionaries(KEYS, JSON | st.lists(st.dictionaries(KEYS, JSON, max_size=3)), max_size=5)


@settings(max_examples=150, deadline=None)
@given(BODIES)
def test_planners_raise_only_azure_errors(body: dict[str, Any]) -> None:
    for planner in (plan_chat, plan_completions, plan_response):
        try:
            planner(body, "model", 0.0, 20)
        except AzureError as exc:
            assert 400 <= exc.status < 500


ODD_BODIES: list[tuple[str, Any]] = [
    ("chat/completions", {"messages": "hi"}),
    ("chat/completions", {"messages": [1, 2]}),
    ("chat/completions", {"messages": [{"role": "user", "content": 5}], "n": "2"}),
    ("chat/completions", {"messages": [{"role": "user"}], "stream_options": {"include_usage": 1}}),
    ("chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": True}),
    ("completions", {"prompt": [[1, "a"]]}),
    ("completions", {"prompt": {}}),
    ("embeddings", {"input": [None]}),
    ("embeddings", {"input": "x", "encoding_format": "int8"}),
    ("embeddings", {"input": "x", "dimensions": "8"}),
    ("embeddings", {}),
    ("images/generations", {"prompt": ""}),
    ("images/generations", {"prompt": "x", "n": 3}),
    ("images/generations", {"prompt": "x", "size": 12}),
    ("audio/speech", {"input": "x"}),
    ("audio/speech", {"input": "x", "voice": "alloy", "response_format": "midi"}),
]
DEPLOYMENT_FOR = {
    "chat/completions": "gpt-4o",
    "completions": "gpt-4o",
    "embeddings": "text-embedding-3-small",
    "images/generations": "dall-e-3",
    "audio/speech": "tts",
}


@pytest.mark.parametrize(("operation", "body"), ODD_BODIES)
async def test_odd_bodies_get_400(
    emulator: RunningEmulator, http: aiohttp.ClientSession, operation: str, body: Any
) -> None:
    url = (
        f"{emulator.url}/openai/deployments/{DEPLOYMENT_FOR[operation]}/{operation}"
        f"?api-version={API_VERSION}"
    )
    async with http.post(url, json=body, headers={"api-key": emulator.keys()[0]}) as response:
        answer = await response.json()
        assert response.status == 400, answer
    assert answer["error"]["message"]


async def _chunks(size: int, head: bytes = b"") -> AsyncIterator[bytes]:
    yield head
    for _ in range(size // 1024):
        yield b"x" * 1024


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(max_body_bytes=4096)])
async def test_chunked_oversized_bodies_get_413(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    part = b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    for operation, content_type, head in (
        ("gpt-4o/chat/completions", "application/json", b""),
        ("whisper/audio/transcriptions", "multipart/form-data; boundary=zzz", part),
    ):
        url = f"{emulator.url}/openai/deployments/{operation}?api-version={API_VERSION}"
        async with http.post(
            url,
            data=_chunks(64 * 1024, head),
            headers={"api-key": emulator.keys()[0], "Content-Type": content_type},
        ) as response:
            assert response.status == 413
            assert (await response.json())["error"]["code"] == "RequestEntityTooLarge"


async def test_broken_multipart_is_400(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    url = (
        f"{emulator.url}/openai/deployments/whisper/audio/transcriptions?api-version={API_VERSION}"
    )
    async with http.post(
        url,
        data=b"--zzz\r\nnot really\r\n",
        headers={
            "api-key": emulator.keys()[0],
            "Content-Type": "multipart/form-data; boundary=zzz",
        },
    ) as response:
        assert 400 <= response.status < 500
