"""A request's token estimate, as Azure makes it: the prompt counted exactly, plus the most the
answer may use.

* prompt: tiktoken over every text the model reads, plus the chat format's fixed overhead
  (3 tokens per message, 1 more for a ``name``, 3 to prime the reply; OpenAI's published rule).
  Tool and function definitions are counted as their JSON. An image counts 85 tokens at
  ``detail: low`` and 1,445 otherwise (the most a 2048x768 high-detail image can cost), so the
  estimate is an upper bound; settlement charges what Azure reports.
* completion: ``max_completion_tokens`` / ``max_tokens`` / ``max_output_tokens``, times ``n``
  (or ``best_of``). A chat or Responses request that sets none gets the configured
  ``default_max_tokens`` written into its payload, so the reservation is also a real bound.
  The completions API's own default is 16.

Prompts above ``large_prompt_chars`` characters are tokenised in a worker thread (tiktoken
releases the GIL), so a 100,000-token prompt never stalls the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any, NamedTuple

import orjson
import tiktoken

from ..core.request import RequestContext
from .tokenizer import Tokenizer

__all__ = ["Estimate", "Large", "Estimator", "prompt_parts", "completion_cap"]

MESSAGE_OVERHEAD = 3
NAME_OVERHEAD = 1
REPLY_PRIMING = 3
IMAGE_LOW = 85
IMAGE_HIGH = 1445
COMPLETIONS_DEFAULT_MAX = 16
_TOKEN_OPS = frozenset({"chat", "completions", "embeddings", "responses"})
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5", "codex")
# the answer's cap, by (operation == "responses"), in order of precedence
_CAP_FIELDS = (("max_completion_tokens", "max_tokens"), ("max_output_tokens",))


class Estimate(NamedTuple):  # a tuple: built for every request
    prompt_tokens: int = 0
    completion_tokens: int = 0  # the most the answer may use, all choices together
    injected: str = ""  # the cap field Keyguard wrote into the payload (none given), if any

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


NO_TOKENS = Estimate()


class Large(NamedTuple):
    """A prompt too large to count on the event loop: :meth:`Estimator.finish` counts it."""

    texts: list[str]
    fixed: int
    cap: int
    enc: tiktoken.Encoding
    injected: str = ""


def _json_text(value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def _content(content: object, texts: list[str]) -> int:
    """Collect the texts of a message's content; return its fixed (image) tokens."""
    if isinstance(content, str):
        texts.append(content)
        return 0
    fixed = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                kind = part.get("type")
                if kind in ("image_url", "input_image"):
                    image = part.get("image_url")
                    detail = image.get("detail") if isinstance(image, dict) else None
                    detail = detail or part.get("detail")
                    fixed += IMAGE_LOW if detail == "low" else IMAGE_HIGH
                else:
                    text = part.get("text", part.get("refusal"))
                    if isinstance(text, str):
                        texts.append(text)
    return fixed


def _message(message: object, texts: list[str]) -> int:
    if not isinstance(message, dict):
        return MESSAGE_OVERHEAD
    fixed = MESSAGE_OVERHEAD
    for field, value in message.items():
        if field == "content":
            if isinstance(value, str):  # the usual case, without a call
                texts.append(value)
            else:
                fixed += _content(value, texts)
        elif field in ("tool_calls", "function_call"):
            texts.append(_json_text(value))
        elif isinstance(value, str):  # role, name, ...
            texts.append(value)
            if field == "name":
                fixed += NAME_OVERHEAD
    return fixed


def _inputs(value: object, texts: list[str]) -> int:
    """Completions ``prompt`` / embeddings ``input``: strings, or token ids (counted as given)."""
    if isinstance(value, str):
        texts.append(value)
        return 0
    fixed = 0
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, int):
                fixed += 1
            elif isinstance(item, list):
                fixed += len(item)
    return fixed


def prompt_parts(operation: str, payload: Mapping[str, Any]) -> tuple[list[str], int]:
    """The texts the model reads and the tokens counted without tokenising (overheads)."""
    texts: list[str] = []
    fixed = 0
    if operation == "chat":
        for message in payload.get("messages") or ():
            fixed += _message(message, texts)
        fixed += REPLY_PRIMING
    elif operation == "responses":
        instructions = payload.get("instructions")
        if isinstance(instructions, str):
            texts.append(instructions)
            fixed += MESSAGE_OVERHEAD
        items = payload.get("input")
        if isinstance(items, str):
            texts.append(items)
            fixed += MESSAGE_OVERHEAD
        elif isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and "content" not in item:
                    rest = {k: v for k, v in item.items() if k not in ("type", "id", "call_id")}
                    texts.append(_json_text(rest))
                    fixed += MESSAGE_OVERHEAD
                else:
                    fixed += _message(item, texts)
        fixed += REPLY_PRIMING
    elif operation == "completions":
        fixed += _inputs(payload.get("prompt"), texts)
    elif operation == "embeddings":
        fixed += _inputs(payload.get("input"), texts)
    for key in ("tools", "functions"):
        if payload.get(key):
            texts.append(_json_text(payload[key]))
    return texts, fixed


def _positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def completion_cap(
    operation: str, payload: dict[str, Any], model: str, default_cap: int, inject: bool
) -> tuple[int, str]:
    """The most the answer may use (all choices), and the field written into ``payload``
    (``""``: none)."""
    if operation == "embeddings":
        return 0, ""
    if operation == "completions":
        cap = _positive_int(payload.get("max_tokens")) or COMPLETIONS_DEFAULT_MAX
        n = _positive_int(payload.get("n")) or 1
        best_of = _positive_int(payload.get("best_of")) or 1
        return cap * max(n, best_of), ""
    names = _CAP_FIELDS[operation == "responses"]
    choices = 1
    if operation == "chat" and "n" in payload:
        choices = _positive_int(payload["n"]) or 1
    present = False
    for name in names:
        value = payload.get(name)
        if value is not None:
            given = _positive_int(value)
            if given is not None:
                return given * choices, ""
            present = True
    if present or not inject:
        return default_cap * choices, ""  # an invalid value: Azure will refuse the request
    if operation == "responses":
        field = "max_output_tokens"
    elif model.lower().startswith(_REASONING_PREFIXES):
        field = "max_completion_tokens"
    else:
        field = "max_tokens"
    payload[field] = default_cap
    return default_cap * choices, field


class Estimator:
    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        default_max_tokens: int,
        inject_max_tokens: bool,
        large_prompt_chars: int,
        executor: Executor | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        self._default_cap = default_max_tokens
        self._inject = inject_max_tokens
        self._large = large_prompt_chars
        self._executor = executor

    def estimate_now(self, ctx: RequestContext, model: str) -> Estimate | Large:
        """The estimate, counted on the event loop; a prompt above ``large_prompt_chars`` is
        answered as :class:`Large`, for :meth:`finish` to count in a worker thread."""
        route, payload = ctx.route, ctx.payload
        if route is None or payload is None:
            return NO_TOKENS
        operation = route.operation.name
        if operation not in _TOKEN_OPS:
            return NO_TOKENS
        cap, injected = completion_cap(operation, payload, model, self._default_cap, self._inject)
        if injected:
            ctx.payload_changed = True
        texts, fixed = prompt_parts(operation, payload)
        enc = self._tokenizer.for_model(model)
        if sum(map(len, texts)) > self._large:
            return Large(texts, fixed, cap, enc, injected)
        return Estimate(fixed + self._tokenizer.count(enc, texts), cap, injected)

    async def finish(self, large: Large) -> Estimate:
        prompt = large.fixed + await self._in_thread(large.enc, large.texts)
        return Estimate(prompt, large.cap, large.injected)

    @staticmethod
    def lower_injected(ctx: RequestContext, estimate: Estimate, room: int) -> Estimate:
        """The estimate with the cap Keyguard injected lowered so the answer fits in ``room``
        tokens (all choices): an app that set no cap is not refused for the default's sake.
        Unchanged when there is no injected cap or no room for one token per choice."""
        payload = ctx.payload
        if not estimate.injected or payload is None:
            return estimate
        per_choice = _positive_int(payload.get(estimate.injected))
        if per_choice is None:
            return estimate
        choices = max(1, estimate.completion_tokens // per_choice)
        lowered = room // choices
        if lowered < 1 or lowered >= per_choice:
            return estimate
        payload[estimate.injected] = lowered
        return estimate._replace(completion_tokens=lowered * choices)

    async def _in_thread(self, enc: tiktoken.Encoding, texts: list[str]) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._tokenizer.count, enc, texts)

    async def estimate(self, ctx: RequestContext, model: str) -> Estimate:
        estimate = self.estimate_now(ctx, model)
        return await self.finish(estimate) if isinstance(estimate, Large) else estimate

    async def count_text(self, model: str, text: str) -> int:
        """Tokens of streamed text (settling a stream that ended without usage); above
        ``large_prompt_chars`` counted in a worker thread, as a prompt is."""
        enc = self._tokenizer.for_model(model)
        if len(text) > self._large:
            return await self._in_thread(enc, [text])
        return self._tokenizer.count(enc, (text,))
