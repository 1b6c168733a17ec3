"""The Responses API: the ``response`` object and its typed stream events (pure)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from typing import Any

from keyguard.emulator import errors
from keyguard.emulator.chat import Plan, requested_max_tokens
from keyguard.emulator.tokens import generate_pieces, prompt_seed, responses_prompt_tokens

__all__ = ["plan_response", "response_usage", "response_object", "response_events"]

MIN_OUTPUT_TOKENS = 16


def plan_response(body: Mapping[str, Any], model: str, now: float, default_tokens: int) -> Plan:
    items = body.get("input")
    if not isinstance(items, str | list):
        raise errors.invalid_request("Missing required parameter: 'input'.", "input")
    max_tokens = requested_max_tokens(body, "max_output_tokens")
    if max_tokens is not None and max_tokens < MIN_OUTPUT_TOKENS:
        raise errors.invalid_request(
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_OUTPUT_TOKENS}, but got {max_tokens} instead.",
            "max_output_tokens",
        )
    length = default_tokens if max_tokens is None else min(max_tokens, default_tokens)
    finish = "length" if max_tokens is not None and max_tokens < default_tokens else "stop"
    seed = prompt_seed(body.get("instructions"), items, body.get("tools"))
    return Plan(
        id="resp_" + secrets.token_hex(24),
        created=int(now),
        model=model,
        prompt_tokens=responses_prompt_tokens(body),
        pieces=(tuple(generate_pieces(seed, length)),),
        finish_reasons=(finish,),
        prompt_index=(0,),
    )


def response_usage(plan: Plan) -> dict[str, Any]:
    output = plan.completion_tokens
    return {
        "input_tokens": plan.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": plan.prompt_tokens + output,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message(plan: Plan, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_" + plan.id[5:],
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def response_object(plan: Plan, body: Mapping[str, Any], done: bool = True) -> dict[str, Any]:
    """The ``response`` object; ``done=False`` gives the in-progress one streams start with."""
    incomplete = plan.finish_reasons[0] == "length"
    status = ("incomplete" if incomplete else "completed") if done else "in_progress"
    text = "".join(plan.pieces[0])
    output = [_message(plan, status, [_text_part(text)])] if done else []
    return {
        "id": plan.id,
        "object": "response",
        "created_at": plan.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if done and incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": plan.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text", {"format": {"type": "text"}}),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": response_usage(plan) if done else None,
        "user": body.get("user"),
        "metadata": body.get("metadata", {}),
    }


def response_events(plan: Plan, body: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event type, data)`` pairs from ``response.created`` to ``response.completed``."""
    sequence = 0

    def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        nonlocal sequence
        data = {"type": kind, "sequence_number": sequence, **fields}
        sequence += 1
        return kind, data

    started = response_object(plan, body, done=False)
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    final = response_object(plan, body)
    item = final["output"][0]
    where = {"item_id": item["id"], "output_index": 0}
    yield event(
        "response.output_item.added", output_index=0, item=_message(plan, "in_progress", [])
    )
    yield event("response.content_part.added", **where, content_index=0, part=_text_part(""))
    for piece in plan.pieces[0]:
        yield event(
            "response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[]
        )
    text = "".join(plan.pieces[0])
    yield event("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
    yield event("response.content_part.done", **where, content_index=0, part=_text_part(text))
    yield event("response.output_item.done", output_index=0, item=item)
    done = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    yield event(done, response=final)
