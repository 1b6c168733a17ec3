"""One reading of a JSON request body: what Keyguard checks is what Azure receives.

Keyguard parses the body once and checks the parsed values (the deployment, ``stream``, token
caps, the prompt for limits and guardrails), then forwards the client's bytes. A JSON object
with a key given twice has two readings: Keyguard's parser keeps the last value, another
parser may keep the first (``{"max_tokens": 100000, "max_tokens": 10}``). A key that differs
from a checked field only in case (``"Stream": true``) has two readings too, for a service that
matches property names case-insensitively. Both are refused (400, Azure's error shape, naming
the key), at any depth, so nothing that reaches the upstream can read differently from what
was checked.

Duplicates are found without a second parse: every ``:`` outside a string separates one key
from its value, so a body whose colons (written, or escaped as ``\\u003a`` inside a string)
number exactly the keys the parser kept plus the colons inside the strings it kept has no
duplicate, and one whose count is more has one (a key dropped takes its colon with it). Only
to name the duplicated key is a body of at most ``NAMED_DUPLICATE_BYTES`` read again, by the
standard library's parser (pure Python per object: 0.1 s to 0.16 s more for 4 MB of
numbers, on the event loop); a larger one is refused without the name.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ..errors import BadRequest

__all__ = ["CHECKED_FIELDS", "MAX_JSON_VALUES", "NAMED_DUPLICATE_BYTES", "read_json_object"]

#: Every property name a stage of the pipeline reads from a request body (routing, limits,
#: policy facts, the monitor's features, guardrails). A key equal to one of these but for
#: its case is refused.
CHECKED_FIELDS = frozenset(
    {
        "model", "stream", "stream_options", "include_usage", "n", "best_of",
        "max_tokens", "max_completion_tokens", "max_output_tokens", "temperature", "seed",
        "messages", "role", "content", "name", "refusal", "tool_calls", "function_call",
        "functions", "tools", "function", "arguments", "call_id", "id", "type", "text",
        "image_url", "input_image", "detail", "input", "prompt", "instructions",
    }
)  # fmt: skip

NAMED_DUPLICATE_BYTES = 65_536  # a body this small is read again to name a duplicated key
_MAX_DEPTH = 128  # deeper documents are refused (orjson's own limit is 1024)
#: strings, objects and arrays a body may hold (numbers are not counted: an embeddings batch
#: of token arrays holds hundreds of thousands). Every stage that reads a body's texts (the
#: guardrails, the limits' estimate, the monitor) pays per string: a 4 MB body of a million
#: one-character strings held the event loop for seconds. 30,000 messages of a chat fit.
MAX_JSON_VALUES = 100_000


def read_json_object(body: bytes) -> dict[str, Any]:
    """The parsed body, a JSON object read one way only; :class:`BadRequest` otherwise."""
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest(
            "We could not parse the JSON body of your request. Send a valid JSON object.",
            reason="malformed_json",
        ) from None
    if not isinstance(payload, dict):
        raise BadRequest("The JSON body must be an object.", reason="malformed_json")
    keys, colons = _walk(payload)
    if body.count(b":") + _escaped_colons(body) != keys + colons:
        if len(body) <= NAMED_DUPLICATE_BYTES:
            _find_duplicate(body)  # raises, naming the key
        raise BadRequest(
            "The JSON body gives a key more than once in one object; send each key once.",
            reason="duplicate_json_key",
        )
    return payload


def _escaped_colons(body: bytes) -> int:
    """The colons spelled ``\\u003a`` (or ``\\u003A``) in the strings of ``body``: with the
    escaped backslashes taken out (pairs, from the left of each run), every backslash left
    starts an escape."""
    if b"\\u003" not in body:
        return 0
    bare = body.replace(b"\\\\", b"")
    return bare.count(b"\\u003a") + bare.count(b"\\u003A")


def _walk(payload: dict[str, Any]) -> tuple[int, int]:
    """Keys kept, and colons inside the strings kept; refuses case-confusable keys, and more
    than :data:`MAX_JSON_VALUES` strings, objects and arrays (as soon as they are counted)."""
    keys = colons = 0
    values = 1  # the body's object
    checked = CHECKED_FIELDS
    stack: list[tuple[Any, int]] = [(payload, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise BadRequest(
                f"The JSON body is nested more than {_MAX_DEPTH} levels deep.",
                reason="malformed_json",
            )
        if type(node) is dict:
            keys += len(node)
            for key, value in node.items():
                if key not in checked and key.lower() in checked:
                    raise _confusable(key)
                colons += key.count(":")
                if type(value) is str:
                    colons += value.count(":")
                    values += 1
                elif type(value) is dict or type(value) is list:
                    stack.append((value, depth + 1))
                    values += 1
        else:  # a list
            for value in node:
                if type(value) is str:
                    colons += value.count(":")
                    values += 1
                elif type(value) is dict or type(value) is list:
                    stack.append((value, depth + 1))
                    values += 1
        if values > MAX_JSON_VALUES:
            raise BadRequest(
                f"The JSON body holds more than {MAX_JSON_VALUES:,} strings, objects and "
                "arrays. Send fewer at once (split the batch into several requests).",
                reason="too_many_json_values",
            )
    return keys, colons


def _find_duplicate(body: bytes) -> None:
    """Read the body again, keeping every pair, and refuse the first duplicated key."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise BadRequest(
                    f"The JSON body gives the key '{_shown(key)}' more than once in one "
                    "object; send each key once.",
                    reason="duplicate_json_key",
                )
            seen[key] = value
        return seen

    try:
        json.loads(body, object_pairs_hook=pairs, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadRequest(
            "We could not parse the JSON body of your request. Send a valid JSON object.",
            reason="malformed_json",
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _confusable(key: str) -> BadRequest:
    return BadRequest(
        f"The JSON body has the key '{_shown(key)}'; property names are case-sensitive: "
        f"use '{key.lower()}'.",
        reason="confusable_json_key",
    )


def _shown(key: str) -> str:
    return key[:64].encode("unicode_escape").decode("ascii")
