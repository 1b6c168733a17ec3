"""Handlers for embeddings, image generation, transcription/translation and speech."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from aiohttp import web

from keyguard.emulator import errors, pipeline
from keyguard.emulator.filters import image_filter_results
from keyguard.emulator.media import (
    SPEECH_CONTENT_TYPES,
    default_dimensions,
    embedding_vector,
    encode_vector,
    png_image,
    speech_audio,
)
from keyguard.emulator.pipeline import Call
from keyguard.emulator.tokens import count_tokens, generate_pieces, input_tokens

__all__ = ["embeddings_handler", "images_handler", "transcription_handler", "speech_handler"]

MAX_INPUTS = 2048
_SIZE_RE = re.compile(r"^\d{2,4}x\d{2,4}$")
_TRANSCRIPT_FORMATS = frozenset({"json", "text", "srt", "verbose_json", "vtt"})


def _inputs(raw: object) -> tuple[list[str], int]:
    """Embedding inputs as seed texts (token arrays as their decimal text) and their tokens."""
    counts = input_tokens(raw)
    if isinstance(raw, str):
        texts = [raw]
    elif counts and isinstance(raw, list) and isinstance(raw[0], int):
        texts = [" ".join(str(v) for v in raw)]
    elif counts and isinstance(raw, list):
        texts = [v if isinstance(v, str) else " ".join(str(t) for t in v) for v in raw]
    else:
        texts = []
    if not texts or len(texts) > MAX_INPUTS or any(not t for t in texts):
        raise errors.invalid_request(
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
            "input",
        )
    return texts, sum(counts)


async def embeddings_handler(call: Call) -> web.StreamResponse:
    body = call.body
    if "input" not in body:
        raise errors.invalid_request("'input' is a required property", "input")
    texts, tokens = _inputs(body["input"])
    largest = default_dimensions(call.model)
    dimensions = body.get("dimensions")
    if dimensions is None:
        dimensions = largest
    elif "ada" in call.model:
        raise errors.invalid_request(
            "This model does not support specifying dimensions.", "dimensions"
        )
    elif (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not (1 <= dimensions <= largest)
    ):
        raise errors.invalid_request(
            f"Invalid 'dimensions': expected an integer between 1 and {largest}.", "dimensions"
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise errors.invalid_request(
            f"Invalid value for 'encoding_format': '{encoding}'. Supported values are: "
            "'float' and 'base64'.",
            "encoding_format",
        )
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": encode_vector(embedding_vector(text, dimensions), encoding),
        }
        for index, text in enumerate(texts)
    ]
    answer = {
        "object": "list",
        "data": data,
        "model": call.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    drop = await pipeline.admit(call, tokens)
    return await pipeline.finish(call, tokens, 0, drop, body=answer)


async def images_handler(call: Call) -> web.StreamResponse:
    body = call.body
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise errors.invalid_request("'prompt' is a required property", "prompt")
    n = body.get("n", 1)
    most = 1 if "dall-e-3" in call.model else 10
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= most:
        raise errors.invalid_request(
            f"You must provide n between 1 and {most} for this model.", "n"
        )
    size = body.get("size", "1024x1024")
    if not isinstance(size, str) or not (_SIZE_RE.match(size) or size == "auto"):
        raise errors.invalid_request(f"Invalid value for 'size': '{size}'.", "size")
    response_format = body.get("response_format", "url")
    if response_format not in ("url", "b64_json"):
        raise errors.invalid_request(
            f"Invalid value for 'response_format': '{response_format}'.", "response_format"
        )
    origin = str(call.request.url.origin())
    data: list[dict[str, Any]] = []
    for index in range(n):
        seed = hashlib.blake2b(f"{index}:{prompt}".encode(), digest_size=8).digest()
        item: dict[str, Any] = {"revised_prompt": prompt}
        if response_format == "url":
            item["url"] = f"{origin}/_emulator/images/{seed.hex()}.png"
        else:
            item["b64_json"] = base64.b64encode(png_image(seed)).decode("ascii")
        item.update(image_filter_results())
        data.append(item)
    answer = {"created": int(call.state.clock()), "data": data}
    drop = await pipeline.admit(call, 0)
    return await pipeline.finish(call, 0, 0, drop, body=answer)


def _timestamp(seconds: float, separator: str) -> str:
    whole = int(seconds)
    millis = int(round((seconds - whole) * 1000))
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}{separator}{millis:03d}"


async def transcription_handler(call: Call) -> web.StreamResponse:
    body = call.body
    audio = body.get("file")
    if not isinstance(audio, bytes) or not audio:
        raise errors.invalid_request("Missing required parameter: 'file'.", "file")
    response_format = body.get("response_format", "json")
    if response_format not in _TRANSCRIPT_FORMATS:
        raise errors.invalid_request(
            f"Invalid value for 'response_format': '{response_format}'.", "response_format"
        )
    seed = hashlib.blake2b(audio, digest_size=16).digest()
    text = "".join(generate_pieces(seed, call.state.config.default_completion_tokens))
    duration = round(max(1.0, len(audio) / 16000), 2)
    drop = await pipeline.admit(call, 0)
    if response_format == "text":
        return await pipeline.finish(call, 0, 0, drop, raw=(text.encode(), "text/plain"))
    if response_format in ("srt", "vtt"):
        sep = "," if response_format == "srt" else "."
        cue = f"{_timestamp(0, sep)} --> {_timestamp(duration, sep)}\n{text}\n"
        doc = f"1\n{cue}\n" if response_format == "srt" else f"WEBVTT\n\n{cue}"
        return await pipeline.finish(call, 0, 0, drop, raw=(doc.encode(), "text/plain"))
    answer: dict[str, Any] = {"text": text}
    if response_format == "verbose_json":
        task = "translate" if call.operation.path.endswith("translations") else "transcribe"
        answer = {
            "task": task,
            "language": "english",
            "duration": duration,
            "text": text,
            "segments": [
                {
                    "id": 0,
                    "seek": 0,
                    "start": 0.0,
                    "end": duration,
                    "text": text,
                    "tokens": list(range(50364, 50364 + count_tokens(text))),
                    "temperature": 0.0,
                    "avg_logprob": -0.25,
                    "compression_ratio": 1.2,
                    "no_speech_prob": 0.01,
                }
            ],
        }
    return await pipeline.finish(call, 0, 0, drop, body=answer)


async def speech_handler(call: Call) -> web.StreamResponse:
    body = call.body
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise errors.invalid_request("'input' is a required property", "input")
    if not isinstance(body.get("voice"), str | dict):
        raise errors.invalid_request("'voice' is a required property", "voice")
    response_format = body.get("response_format", "mp3")
    content_type = SPEECH_CONTENT_TYPES.get(str(response_format))
    if content_type is None:
        raise errors.invalid_request(
            f"Invalid value for 'response_format': '{response_format}'.", "response_format"
        )
    audio = speech_audio(text, str(response_format))
    drop = await pipeline.admit(call, 0)
    return await pipeline.finish(call, 0, 0, drop, raw=(audio, content_type))
