"""What the policy looks at in a request, read from the request context (pure).

* **output cap**: chat takes the larger of ``max_tokens`` and ``max_completion_tokens``,
  completions ``max_tokens``, responses ``max_output_tokens``; times ``n`` (chat, completions)
  or ``best_of`` (completions) when the request asks for several choices. A value that is not
  a positive integer counts as no cap.
* **prompt size**, in characters (Unicode code points, not bytes): the length of every string
  inside the request's prompt fields (``messages``, ``prompt``, ``input``, ``instructions``,
  ``tools``, ``functions``), wherever nested, plus one per integer (token ids). Images sent
  inline as data URLs count with their base64 text. Multipart bodies (audio) count 0.
* **streaming**: any ``stream`` value other than absent, ``null`` or ``false``.
* **source**: the client address the proxy computed (``X-Forwarded-For`` honoured only from
  trusted proxies, :mod:`keyguard.core.netaddr`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.netaddr import parse_hop
from ..core.request import RequestContext
from .evaluate import IPAddress, RequestFacts

__all__ = ["output_cap", "prompt_chars", "request_facts", "parse_address"]

PROMPT_FIELDS = ("messages", "prompt", "input", "instructions", "tools", "functions")
_CAP_FIELDS: dict[str, tuple[str, ...]] = {
    "chat": ("max_tokens", "max_completion_tokens"),
    "completions": ("max_tokens",),
    "responses": ("max_output_tokens",),
}


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def output_cap(operation: str, payload: Mapping[str, Any]) -> int | None:
    """The most output tokens the request may produce, or ``None`` when it sets no cap."""
    fields = _CAP_FIELDS.get(operation)
    if fields is None:
        return None
    caps = []
    for name in fields:
        if name in payload and payload[name] is not None:
            cap = _positive_int(payload[name])
            if cap is None:
                return None  # present but malformed: no usable cap
            caps.append(cap)
    if not caps:
        return None
    choices = 1
    for name in ("n", "best_of"):
        value = payload.get(name)
        if value is not None:
            count = _positive_int(value)
            if count is None:
                return None
            choices = max(choices, count)
    return max(caps) * choices


def prompt_chars(payload: Mapping[str, Any]) -> int:
    """Characters of text in the request's prompt fields (see the module docstring)."""
    total = 0
    stack: list[Any] = [payload[f] for f in PROMPT_FIELDS if f in payload]
    while stack:
        item = stack.pop()
        kind = type(item)  # parsed JSON: exactly str, dict, list, int, float, bool or None
        if kind is str:
            total += len(item)
        elif kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is int:
            total += 1
    return total


def parse_address(remote: str | None) -> IPAddress | None:
    return None if remote is None else parse_hop(remote)


def request_facts(ctx: RequestContext, *, measure_prompt: bool, parse_source: bool) -> RequestFacts:
    """The facts of ``ctx``; the prompt is measured and the address parsed only when asked."""
    route = ctx.route
    operation = route.operation.name if route is not None else ""
    payload = ctx.payload
    stream = False
    cap = None
    size = 0 if measure_prompt else None
    if payload is not None:
        stream = payload.get("stream") not in (None, False)
        cap = output_cap(operation, payload)
        if measure_prompt:
            size = prompt_chars(payload)
    return RequestFacts(
        operation=operation,
        deployment=ctx.deployment,
        stream=stream,
        max_output_tokens=cap,
        prompt_chars=size,
        source=parse_address(ctx.remote) if parse_source else None,
    )
