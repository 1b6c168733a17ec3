"""Deterministic token counting and text generation (no BPE tables, no downloads).

The token rule, documented for users who check accounting to the token:

* a text has ``len(re.findall(r"\\w+|[^\\w\\s]", text))`` tokens: each run of word characters
  is one token, each other non-space character is one token;
* a chat prompt costs 3 tokens per message plus its content (text parts counted as above,
  each image part 85), plus 1 + the tokens of ``name`` when present, plus the tokens of any
  assistant ``tool_calls`` (function name and arguments), plus the tokens of the JSON of
  ``tools``/``functions``, plus 3 for priming the reply;
* a Responses API prompt counts ``instructions`` and every input item as chat messages;
* a completions or embeddings input costs its tokens (a list of integers costs its length).

Generated text is a sequence of pieces, each exactly one token under that rule (a word with
its leading space, or a full stop), seeded from a hash of the prompt: the same request gives the
same text, and ``count_tokens(text) == completion_tokens`` always holds.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

__all__ = [
    "TOKEN_PATTERN",
    "MESSAGE_OVERHEAD",
    "REPLY_PRIMING",
    "IMAGE_TOKENS",
    "count_tokens",
    "chat_prompt_tokens",
    "responses_prompt_tokens",
    "input_tokens",
    "prompt_seed",
    "generate_pieces",
]

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")
MESSAGE_OVERHEAD = 3
REPLY_PRIMING = 3
IMAGE_TOKENS = 85

_WORDS = (
    "azure gateway token stream model request answer deployment quota secure key rotate "
    "identity cloud region latency vector prompt reply budget policy audit signal limit window "
    "minute second ledger tenant service query result context memory cache thread route "
    "header bearer scope claim issuer audience signature proof trace metric alert guard "
    "shield vault secret random ocean river forest mountain harbor lantern compass meadow"
).split()


def count_tokens(text: str) -> int:
    """Tokens in ``text`` under the emulator's rule."""
    return len(TOKEN_PATTERN.findall(text))


def _content_tokens(content: object) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    total = 0
    if isinstance(content, Sequence):
        for part in content:
            if isinstance(part, str):
                total += count_tokens(part)
            elif isinstance(part, Mapping):
                kind = part.get("type")
                if kind in ("image_url", "input_image"):
                    total += IMAGE_TOKENS
                else:
                    text = part.get("text", part.get("refusal", ""))
                    total += count_tokens(text) if isinstance(text, str) else 0
    return total


def _message_tokens(message: Mapping[str, Any]) -> int:
    total = MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
    name = message.get("name")
    if isinstance(name, str):
        total += 1 + count_tokens(name)
    calls = message.get("tool_calls")
    if isinstance(calls, Sequence):
        for call in calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                total += count_tokens(str(function.get("name", "")))
                total += count_tokens(str(function.get("arguments", "")))
    return total


def _canonical(value: object) -> bytes:
    """Sorted-key JSON of ``value`` (``repr`` for what JSON cannot hold, e.g. huge integers)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return repr(value).encode()


def _json_tokens(value: object) -> int:
    return count_tokens(_canonical(value).decode()) if value else 0


def chat_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Prompt tokens of a chat completions request body (``messages`` already validated)."""
    messages: Iterable[Mapping[str, Any]] = body.get("messages") or ()
    total = sum(_message_tokens(m) for m in messages)
    return (
        total
        + _json_tokens(body.get("tools"))
        + _json_tokens(body.get("functions"))
        + (REPLY_PRIMING)
    )


def responses_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Input tokens of a Responses API request body."""
    total = REPLY_PRIMING + _json_tokens(body.get("tools"))
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        total += MESSAGE_OVERHEAD + count_tokens(instructions)
    items = body.get("input")
    if isinstance(items, str):
        return total + MESSAGE_OVERHEAD + count_tokens(items)
    for item in items or ():
        if not isinstance(item, Mapping):
            continue
        if "content" in item:
            total += _message_tokens(item)
        else:
            text = item.get("output", item.get("arguments", ""))
            total += MESSAGE_OVERHEAD + (count_tokens(text) if isinstance(text, str) else 0)
    return total


def _token_ids(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def input_tokens(value: object) -> list[int]:
    """Per-input token counts of a completions ``prompt`` or embeddings ``input``.

    Accepted shapes: a string, a list of strings, a list of token ids, a list of lists of
    token ids. Anything else gives ``[]`` (the caller refuses the request).
    """
    if isinstance(value, str):
        return [count_tokens(value)]
    if not isinstance(value, list) or not value:
        return []
    if _token_ids(value):
        return [len(value)]
    if all(isinstance(v, str) for v in value):
        return [count_tokens(v) for v in value]
    if all(_token_ids(v) for v in value):
        return [len(v) for v in value]
    return []


def prompt_seed(*parts: object) -> bytes:
    """A stable 16-byte seed for generation, from JSON-serialisable prompt parts."""
    return hashlib.blake2b(_canonical(parts), digest_size=16).digest()


def generate_pieces(seed: bytes, count: int, index: int = 0) -> list[str]:
    """``count`` text pieces of exactly one token each, deterministic in ``(seed, index)``."""
    rng = random.Random(int.from_bytes(seed, "big") ^ (index * 0x9E3779B97F4A7C15))
    pieces: list[str] = []
    since_stop = 0
    for position in range(count):
        last = position == count - 1
        if since_stop >= 6 and not last and rng.random() < 0.25:
            pieces.append(".")
            since_stop = 0
            continue
        word = rng.choice(_WORDS)
        if not pieces or pieces[-1] == ".":
            word = word.capitalize()
        pieces.append(word if not pieces else " " + word)
        since_stop += 1
    return pieces
