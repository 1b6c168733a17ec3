"""Embeddings, images, transcription/translation and speech through the openai SDK."""

from __future__ import annotations

import base64
import math

import aiohttp
import openai
import pytest

from keyguard.emulator import RunningEmulator
from tests.support.emulators import API_VERSION

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_embeddings_sdk_default_base64(azure: openai.AsyncAzureOpenAI) -> None:
    # The SDK asks for base64 by default and decodes it to floats.
    answer = await azure.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "second one"]
    )
    assert [d.index for d in answer.data] == [0, 1]
    vector = answer.data[0].embedding
    assert len(vector) == 1536
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-4)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 4
    floats = await azure.embeddings.create(
        model="text-embedding-3-small", input="hello world", encoding_format="float"
    )
    assert floats.data[0].embedding == vector
    assert floats.usage.prompt_tokens == 2


async def test_embeddings_dimensions_and_token_input(v1: openai.AsyncOpenAI) -> None:
    answer = await v1.embeddings.create(
        model="text-embedding-3-small", input="short", dimensions=256
    )
    assert len(answer.data[0].embedding) == 256
    tokens = await v1.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3]])
    assert tokens.usage.prompt_tokens == 3
    with pytest.raises(openai.BadRequestError):
        await v1.embeddings.create(model="text-embedding-3-small", input="x", dimensions=4096)
    with pytest.raises(openai.BadRequestError):
        await v1.embeddings.create(model="text-embedding-3-small", input="")


async def test_embeddings_raw_base64(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    url = (
        f"{emulator.url}/openai/deployments/text-embedding-3-small/embeddings"
        f"?api-version={API_VERSION}"
    )
    async with http.post(
        url,
        json={"input": "abc", "encoding_format": "base64", "dimensions": 8},
        headers={"api-key": emulator.keys()[0]},
    ) as response:
        body = await response.json()
    assert len(base64.b64decode(body["data"][0]["embedding"])) == 8 * 4


async def test_images_b64_and_url(
    azure: openai.AsyncAzureOpenAI, http: aiohttp.ClientSession
) -> None:
    inline = await azure.images.generate(
        model="dall-e-3", prompt="a lighthouse", response_format="b64_json"
    )
    assert inline.data is not None
    png = base64.b64decode(inline.data[0].b64_json or "")
    assert png.startswith(PNG_MAGIC)
    assert inline.data[0].revised_prompt == "a lighthouse"
    linked = await azure.images.generate(model="dall-e-3", prompt="a lighthouse")
    assert linked.data is not None and linked.data[0].url
    async with http.get(linked.data[0].url) as response:
        assert response.status == 200
        assert response.content_type == "image/png"
        assert (await response.read()).startswith(PNG_MAGIC)


async def test_transcriptions_and_translations(
    azure: openai.AsyncAzureOpenAI, emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    audio = ("speech.wav", b"RIFF" + bytes(4000), "audio/wav")
    plain = await azure.audio.transcriptions.create(model="whisper", file=audio)
    assert (
        plain.text
        and plain.text
        == (await azure.audio.transcriptions.create(model="whisper", file=audio)).text
    )
    text = await azure.audio.transcriptions.create(
        model="whisper", file=audio, response_format="text"
    )
    assert text == plain.text
    verbose = await azure.audio.transcriptions.create(
        model="whisper", file=audio, response_format="verbose_json"
    )
    assert verbose.text == plain.text and verbose.duration is not None
    # (the SDK marks audio.translations deprecated, so this one goes over raw multipart)
    form = aiohttp.FormData()
    form.add_field("file", audio[1], filename=audio[0], content_type=audio[2])
    form.add_field("response_format", "verbose_json")
    url = f"{emulator.url}/openai/deployments/whisper/audio/translations?api-version={API_VERSION}"
    async with http.post(url, data=form, headers={"api-key": emulator.keys()[0]}) as response:
        translated = await response.json()
    assert translated["task"] == "translate" and translated["text"] == plain.text


async def test_transcription_needs_multipart(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    url = (
        f"{emulator.url}/openai/deployments/whisper/audio/transcriptions?api-version={API_VERSION}"
    )
    async with http.post(url, json={"file": "x"}, headers={"api-key": emulator.keys()[0]}) as r:
        assert r.status == 415


async def test_speech(azure: openai.AsyncAzureOpenAI, emulator: RunningEmulator) -> None:
    speech = await azure.audio.speech.create(model="tts", voice="alloy", input="Hello there")
    assert speech.response.headers["content-type"] == "audio/mpeg"
    audio = speech.content
    assert audio[:2] == b"\xff\xfb" and len(audio) % 417 == 0
    wav = await azure.audio.speech.create(
        model="tts", voice="alloy", input="Hello there", response_format="wav"
    )
    assert wav.content.startswith(b"RIFF") and wav.content[8:12] == b"WAVE"


async def test_media_usage_is_recorded(
    azure: openai.AsyncAzureOpenAI, emulator: RunningEmulator
) -> None:
    await azure.embeddings.create(model="text-embedding-3-small", input="one two three")
    usage = emulator.state.usage_view()
    assert usage["deployments"]["text-embedding-3-small"] == {
        "requests": 1,
        "prompt_tokens": 3,
        "completion_tokens": 0,
        "total_tokens": 3,
        "failed": 0,
    }
