"""Chat completions and legacy completions: validation, planning, bodies and stream chunks.

Pure functions over the parsed request. :func:`plan_chat` / :func:`plan_completions` decide
the answer (token counts, generated pieces, finish reasons); the body and chunk builders turn a
:class:`Plan` into Azure's JSON exactly, so the streamed and non-streamed answers to one
request carry the same text and the same ``usage``.
"""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from keyguard.emulator import errors
from keyguard.emulator.filters import (
    completion_filter_results,
    prompt_filter_results,
    stream_filter_results,
)
from keyguard.emulator.tokens import (
    chat_prompt_tokens,
    generate_pieces,
    input_tokens,
    prompt_seed,
)

__all__ = [
    "Plan",
    "new_id",
    "fingerprint",
    "requested_max_tokens",
    "plan_chat",
    "plan_completions",
    "chat_usage",
    "chat_body",
    "chat_chunks",
    "completions_body",
    "completions_chunks",
]

_ALNUM = string.ascii_letters + string.digits


_IDS = random.Random(secrets.randbits(64))  # ids need to be unique, not secret


def new_id(prefix: str, length: int = 29) -> str:
    return prefix + "".join(_IDS.choices(_ALNUM, k=length))


def fingerprint(model: str) -> str:
    """A stable ``system_fingerprint`` for a model name."""
    return "fp_" + prompt_seed(model).hex()[:10]


@dataclass(frozen=True, slots=True)
class Plan:
    """What one request will answer: per-choice pieces and finish reasons, token totals."""

    id: str
    created: int
    model: str
    prompt_tokens: int
    pieces: tuple[tuple[str, ...], ...]
    finish_reasons: tuple[str, ...]
    #: prompt index of each choice (completions with several prompts); 0 for chat.
    prompt_index: tuple[int, ...]
    prompt_count: int = 1

    @property
    def completion_tokens(self) -> int:
        return sum(len(p) for p in self.pieces)


def _positive_int(body: Mapping[str, Any], name: str, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.invalid_request(
            f"Invalid type for '{name}': expected an integer, but got {type(value).__name__}.",
            name,
        )
    if not 1 <= value <= high:
        raise errors.invalid_request(
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got "
            f"{value} instead."
            if value < 1
            else f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, "
            f"but got {value} instead.",
            name,
        )
    return value


def requested_max_tokens(body: Mapping[str, Any], *names: str) -> int | None:
    """The first of ``names`` present in ``body`` (validated), else ``None``."""
    for name in names:
        value = _positive_int(body, name, 1_000_000)
        if value is not None:
            return value
    return None


def _check_stream_options(body: Mapping[str, Any]) -> None:
    options = body.get("stream_options")
    if options is None:
        return
    if not isinstance(options, Mapping):
        raise errors.invalid_request("Invalid type for 'stream_options'.", "stream_options")
    if not body.get("stream"):
        raise errors.invalid_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )


def _choices(
    seed: bytes, count: int, n: int, max_tokens: int | None, default: int
) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
    length = default if max_tokens is None else min(max_tokens, default)
    finish = "length" if max_tokens is not None and max_tokens < default else "stop"
    pieces = tuple(tuple(generate_pieces(seed, length, index)) for index in range(count * n))
    return pieces, (finish,) * (count * n)


def plan_chat(body: Mapping[str, Any], model: str, now: float, default_tokens: int) -> Plan:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise errors.invalid_request("'messages' is a required property", "messages")
    if not messages:
        raise errors.invalid_request("[] is too short - 'messages'", "messages")
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise errors.invalid_request(
                f"'role' is a required property - 'messages.{position}'", f"messages.{position}"
            )
    _check_stream_options(body)
    n = _positive_int(body, "n", 128) or 1
    max_tokens = requested_max_tokens(body, "max_completion_tokens", "max_tokens")
    seed = prompt_seed(messages, body.get("tools"))
    pieces, finish = _choices(seed, 1, n, max_tokens, default_tokens)
    return Plan(
        id=new_id("chatcmpl-"),
        created=int(now),
        model=model,
        prompt_tokens=chat_prompt_tokens(body),
        pieces=pieces,
        finish_reasons=finish,
        prompt_index=(0,) * n,
    )


def plan_completions(body: Mapping[str, Any], model: str, now: float, default_tokens: int) -> Plan:
    prompt = body.get("prompt", "<|endoftext|>")
    counts = input_tokens(prompt)
    if not counts:
        raise errors.invalid_request("Invalid type for 'prompt'.", "prompt")
    _check_stream_options(body)
    n = _positive_int(body, "n", 128) or 1
    max_tokens = requested_max_tokens(body, "max_tokens")
    if max_tokens is None:
        max_tokens = 16  # the completions API's documented default
    prompts = [prompt] if isinstance(prompt, str) or len(counts) == 1 else list(prompt)
    all_pieces: list[tuple[str, ...]] = []
    finishes: list[str] = []
    for one in prompts:
        pieces, finish = _choices(prompt_seed(one), 1, n, max_tokens, default_tokens)
        all_pieces.extend(pieces)
        finishes.extend(finish)
    return Plan(
        id=new_id("cmpl-"),
        created=int(now),
        model=model,
        prompt_tokens=sum(counts),
        pieces=tuple(all_pieces),
        finish_reasons=tuple(finishes),
        prompt_index=tuple(i for i in range(len(prompts)) for _ in range(n)),
        prompt_count=len(prompts),
    )


def chat_usage(plan: Plan) -> dict[str, Any]:
    completion = plan.completion_tokens
    return {
        "completion_tokens": completion,
        "completion_tokens_details": {
            "accepted_prediction_tokens": 0,
            "audio_tokens": 0,
            "reasoning_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
        "prompt_tokens": plan.prompt_tokens,
        "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0},
        "total_tokens": plan.prompt_tokens + completion,
    }


def chat_body(plan: Plan) -> dict[str, Any]:
    choices: list[dict[str, Any]] = [
        {
            "content_filter_results": completion_filter_results(),
            "finish_reason": plan.finish_reasons[i],
            "index": i,
            "logprobs": None,
            "message": {
                "annotations": [],
                "content": "".join(pieces),
                "refusal": None,
                "role": "assistant",
            },
        }
        for i, pieces in enumerate(plan.pieces)
    ]
    return {
        "choices": choices,
        "created": plan.created,
        "id": plan.id,
        "model": plan.model,
        "object": "chat.completion",
        "prompt_filter_results": prompt_filter_results(1),
        "system_fingerprint": fingerprint(plan.model),
        "usage": chat_usage(plan),
    }


def chat_chunks(plan: Plan, include_usage: bool) -> Iterator[dict[str, Any]]:
    """Azure's chunk sequence (without the final ``[DONE]``)."""
    usage: dict[str, Any] = {"usage": None} if include_usage else {}
    first: dict[str, Any] = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
    yield {**first, "prompt_filter_results": prompt_filter_results(1), **usage}
    head = {
        "created": plan.created,
        "id": plan.id,
        "model": plan.model,
        "object": "chat.completion.chunk",
        "system_fingerprint": fingerprint(plan.model),
    }

    def chunk(
        index: int, delta: dict[str, Any], finish: str | None, filters: Any
    ) -> dict[str, Any]:
        choice = {
            "content_filter_results": filters,
            "delta": delta,
            "finish_reason": finish,
            "index": index,
            "logprobs": None,
        }
        return {"choices": [choice], **head, **usage}

    for index, pieces in enumerate(plan.pieces):
        yield chunk(index, {"content": "", "refusal": None, "role": "assistant"}, None, {})
        for piece in pieces:
            yield chunk(index, {"content": piece}, None, stream_filter_results())
        yield chunk(index, {}, plan.finish_reasons[index], {})
    if include_usage:
        yield {"choices": [], **head, "usage": chat_usage(plan)}


def _completions_usage(plan: Plan) -> dict[str, int]:
    completion = plan.completion_tokens
    return {
        "completion_tokens": completion,
        "prompt_tokens": plan.prompt_tokens,
        "total_tokens": plan.prompt_tokens + completion,
    }


def completions_body(plan: Plan) -> dict[str, Any]:
    choices: list[dict[str, Any]] = [
        {
            "content_filter_results": completion_filter_results(),
            "finish_reason": plan.finish_reasons[i],
            "index": i,
            "logprobs": None,
            "text": "".join(pieces),
        }
        for i, pieces in enumerate(plan.pieces)
    ]
    return {
        "choices": choices,
        "created": plan.created,
        "id": plan.id,
        "model": plan.model,
        "object": "text_completion",
        "prompt_filter_results": prompt_filter_results(plan.prompt_count),
        "system_fingerprint": None,
        "usage": _completions_usage(plan),
    }


def completions_chunks(plan: Plan, include_usage: bool) -> Iterator[dict[str, Any]]:
    usage: dict[str, Any] = {"usage": None} if include_usage else {}
    first: dict[str, Any] = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
    yield {**first, "prompt_filter_results": prompt_filter_results(plan.prompt_count), **usage}
    head = {
        "created": plan.created,
        "id": plan.id,
        "model": plan.model,
        "object": "text_completion",
    }
    for index, pieces in enumerate(plan.pieces):
        for position, piece in enumerate(pieces):
            last = position == len(pieces) - 1
            choice = {
                "content_filter_results": stream_filter_results(),
                "finish_reason": plan.finish_reasons[index] if last else None,
                "index": index,
                "logprobs": None,
                "text": piece,
            }
            yield {"choices": [choice], **head, **usage}
    if include_usage:
        yield {"choices": [], **head, "usage": _completions_usage(plan)}
