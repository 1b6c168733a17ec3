"""The Azure OpenAI data plane: both URL families and every operation handler.

Legacy: ``POST /openai/deployments/{deployment}/{operation}?api-version=...`` and
``POST /openai/responses?api-version=...``. v1: ``POST /openai/v1/{operation}`` with the
deployment in the body's ``model`` and ``GET /openai/v1/models``. Each handler plans the answer
(pure), passes the rate limiter and faults with the planned cost, answers, and records usage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from keyguard.emulator import errors, pipeline
from keyguard.emulator.chat import (
    chat_body,
    chat_chunks,
    completions_body,
    completions_chunks,
    plan_chat,
    plan_completions,
)
from keyguard.emulator.media_ops import (
    embeddings_handler,
    images_handler,
    speech_handler,
    transcription_handler,
)
from keyguard.emulator.pipeline import Call, Operation
from keyguard.emulator.ratelimit import estimate_cost
from keyguard.emulator.responses_api import plan_response, response_events, response_object
from keyguard.emulator.streaming import write_json

__all__ = [
    "LEGACY_OPERATIONS",
    "V1_OPERATIONS",
    "legacy_handler",
    "responses_handler",
    "v1_handler",
    "models_handler",
]

Handler = Callable[[Call], Awaitable[web.StreamResponse]]
_CHAT = frozenset({"chat"})

CHAT = Operation("chat/completions", "ChatCompletions_Create", "chatCompletion", _CHAT)
COMPLETIONS = Operation("completions", "Completions_Create", "completion", _CHAT)
EMBEDDINGS = Operation("embeddings", "Embeddings_Create", "embeddings", frozenset({"embeddings"}))
IMAGES = Operation(
    "images/generations", "ImageGenerations_Create", "imageGeneration", frozenset({"images"})
)
TRANSCRIPTIONS = Operation(
    "audio/transcriptions",
    "Transcriptions_Create",
    "transcription",
    frozenset({"audio"}),
    "multipart",
)
TRANSLATIONS = Operation(
    "audio/translations", "Translations_Create", "translation", frozenset({"audio"}), "multipart"
)
SPEECH = Operation("audio/speech", "Speech_Create", "speech", frozenset({"speech"}))
RESPONSES = Operation("responses", "Responses_Create", "responses", _CHAT)


def _max_tokens(call: Call, *names: str) -> int | None:
    for name in names:
        value = call.body.get(name)
        if isinstance(value, int):
            return value
    return None


def _include_usage(call: Call) -> bool:
    options = call.body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


async def chat_handler(call: Call) -> web.StreamResponse:
    config = call.state.config
    plan = plan_chat(call.body, call.model, call.state.clock(), config.default_completion_tokens)
    scripted = call.state.take_answer()
    if scripted is not None:
        plan = replace(plan, pieces=(scripted,) * len(plan.pieces))
    n = len(plan.pieces)
    max_tokens = _max_tokens(call, "max_completion_tokens", "max_tokens")
    cost = estimate_cost(plan.prompt_tokens, max_tokens, n, config.default_max_tokens_charge)
    drop = await pipeline.admit(call, cost)
    tokens = (plan.prompt_tokens, plan.completion_tokens)
    if call.body.get("stream") is True:
        events = ((None, c) for c in chat_chunks(plan, _include_usage(call)))
        return await pipeline.finish(call, *tokens, drop, events=events, done_marker=True)
    return await pipeline.finish(call, *tokens, drop, body=chat_body(plan))


async def completions_handler(call: Call) -> web.StreamResponse:
    config = call.state.config
    plan = plan_completions(
        call.body, call.model, call.state.clock(), config.default_completion_tokens
    )
    best_of = call.body.get("best_of")
    choices = max(len(plan.pieces), best_of if isinstance(best_of, int) else 0)
    cost = estimate_cost(plan.prompt_tokens, _max_tokens(call, "max_tokens") or 16, choices)
    drop = await pipeline.admit(call, cost)
    tokens = (plan.prompt_tokens, plan.completion_tokens)
    if call.body.get("stream") is True:
        events = ((None, c) for c in completions_chunks(plan, _include_usage(call)))
        return await pipeline.finish(call, *tokens, drop, events=events, done_marker=True)
    return await pipeline.finish(call, *tokens, drop, body=completions_body(plan))


async def responses_api_handler(call: Call) -> web.StreamResponse:
    config = call.state.config
    plan = plan_response(
        call.body, call.model, call.state.clock(), config.default_completion_tokens
    )
    scripted = call.state.take_answer()
    if scripted is not None:
        plan = replace(plan, pieces=(scripted,))
    max_tokens = _max_tokens(call, "max_output_tokens")
    cost = estimate_cost(plan.prompt_tokens, max_tokens, 1, config.default_max_tokens_charge)
    drop = await pipeline.admit(call, cost)
    tokens = (plan.prompt_tokens, plan.completion_tokens)
    if call.body.get("stream") is True:
        return await pipeline.finish(call, *tokens, drop, events=response_events(plan, call.body))
    return await pipeline.finish(call, *tokens, drop, body=response_object(plan, call.body))


_HANDLERS: dict[str, Handler] = {
    CHAT.path: chat_handler,
    COMPLETIONS.path: completions_handler,
    EMBEDDINGS.path: embeddings_handler,
    IMAGES.path: images_handler,
    TRANSCRIPTIONS.path: transcription_handler,
    TRANSLATIONS.path: transcription_handler,
    SPEECH.path: speech_handler,
    RESPONSES.path: responses_api_handler,
}
LEGACY_OPERATIONS = {
    op.path: op
    for op in (CHAT, COMPLETIONS, EMBEDDINGS, IMAGES, TRANSCRIPTIONS, TRANSLATIONS, SPEECH)
}
V1_OPERATIONS = {op.path: op for op in (CHAT, EMBEDDINGS, RESPONSES)}


async def _serve(
    request: web.Request, operation: Operation, api_version: str, deployment: str | None
) -> web.StreamResponse:
    caller = pipeline.authenticate(request)
    if operation.body == "multipart":
        body = await pipeline.read_form(request)
    else:
        body = await pipeline.read_json(request)
        pipeline.state_of(request).received.append(body)
    call = Call(request, pipeline.state_of(request), operation, api_version, caller, body)
    pipeline.resolve(call, deployment)
    return await _HANDLERS[operation.path](call)


async def legacy_handler(request: web.Request) -> web.StreamResponse:
    operation = LEGACY_OPERATIONS.get(request.match_info["operation"])
    if operation is None:
        raise errors.resource_not_found()
    version = pipeline.check_api_version(request, v1=False)
    return await _serve(request, operation, version, request.match_info["deployment"])


async def responses_handler(request: web.Request) -> web.StreamResponse:
    version = pipeline.check_api_version(request, v1=False, responses=True)
    return await _serve(request, RESPONSES, version, None)


async def v1_handler(request: web.Request) -> web.StreamResponse:
    operation = V1_OPERATIONS.get(request.match_info["operation"])
    if operation is None:
        raise errors.resource_not_found()
    version = pipeline.check_api_version(request, v1=True)
    return await _serve(request, operation, version, None)


_CAPABILITIES = {
    "chat": {"chat_completion": True, "completion": True, "embeddings": False},
    "embeddings": {"chat_completion": False, "completion": False, "embeddings": True},
    "images": {"image_generation": True},
    "audio": {"transcription": True},
    "speech": {"text_to_speech": True},
}


async def models_handler(request: web.Request) -> web.StreamResponse:
    """``GET /openai/v1/models``: the models behind this resource's deployments."""
    pipeline.check_api_version(request, v1=True)
    pipeline.authenticate(request)
    state = pipeline.state_of(request)
    seen: dict[str, dict[str, Any]] = {}
    for spec in state.config.deployments.values():
        seen.setdefault(
            spec.model,
            {
                "id": spec.model,
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "system",
                "capabilities": _CAPABILITIES[spec.kind],
                "lifecycle_status": "generally-available",
                "status": "succeeded",
            },
        )
    response, _ = await write_json(request, {"object": "list", "data": list(seen.values())}, None)
    return response
