"""Everything known about one proxied request, filled in step by step along the pipeline.

One mutable object per request, passed to each step and to the hooks (authorisation, limits,
recording). It never holds a credential: only the principal the credential resolved to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .operations import Route
from .principal import Principal
from .transport import HeaderLookup

__all__ = ["AnswerGuard", "PolicyOutcome", "RequestContext", "Usage", "client_fingerprint"]


class AnswerGuard(Protocol):
    """The guardrails over one request's answer (set by the guard stage, used by the relay).

    ``body`` returns the non-streamed answer to release (maybe edited, or cut; ``parsed``: the
    answer's JSON when the relay has parsed it already, else ``None``); ``feed`` takes
    whole server-sent events and returns those safe to send now; ``flush`` ends the stream
    (``rest``: a trailing partial event); once ``cut`` is true the stream has ended (a value
    to block was found) and the relay stops reading upstream."""

    async def body(
        self, status: int, content_type: str, payload: bytes, parsed: Any = None
    ) -> bytes: ...

    def feed(self, events: bytes) -> bytes: ...

    def flush(self, rest: bytes) -> bytes: ...

    @property
    def cut(self) -> bool: ...


@dataclass(slots=True)
class Usage:
    """Token usage as Azure reported it (chat/completions, embeddings or responses shapes)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_azure(cls, usage: dict[str, Any]) -> Usage:
        """Read any of Azure's usage objects; unknown or malformed fields count as 0."""
        prompt = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
        completion = _int(usage.get("completion_tokens", usage.get("output_tokens")))
        prompt_details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        completion_details = usage.get("completion_tokens_details") or usage.get(
            "output_tokens_details"
        )
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=_int(_get(prompt_details, "cached_tokens")),
            reasoning_tokens=_int(_get(completion_details, "reasoning_tokens")),
        )


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else None


def _int(value: Any) -> int:
    """A token count: a positive integer within 64 bits, else 0 (even from the upstream)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 62:
        return value
    return 0


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """Which binding and role allowed the request, or which refused it and why (``denied``:
    the reason; ``detail``: what failed). Kept for operators, never sent to the caller."""

    binding: str | None
    role: str | None
    denied: str | None = None
    detail: str | None = None
    roles: tuple[str, ...] = ()  # every role that allows the request (guardrails combine them)


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float  # time.perf_counter() at arrival
    method: str
    remote: str | None
    user_agent: str | None
    client: str | None = None  # the SDK's X-Stainless-* platform headers (client_fingerprint)
    presented_key_id: str | None = None  # the key id a Keyguard credential carried, valid or not
    # a keyed digest of a credential that failed to authenticate (never the credential): tells
    # one client retrying one bad credential from a tool trying many
    refused_credential: str | None = None
    route: Route | None = None
    principal: Principal | None = None
    deployment: str | None = None  # set only once it is a configured deployment
    payload: dict[str, Any] | None = None  # the parsed JSON body, when the body is JSON
    body_bytes: int = 0  # the request body's length, once read
    stream_requested: bool = False
    usage_requested: bool = False  # the client asked for stream_options.include_usage
    # Filled by the relay:
    status: int = 0
    reason: str = "ok"
    upstream_status: int = 0
    upstream_ms: float = 0.0  # time from sending upstream to the end of the answer
    streamed: bool = False
    streamed_text: list[str] = field(default_factory=list)  # content deltas (streams only)
    usage: Usage | None = None
    client_disconnected: bool = False
    upstream_broke: bool = False
    # Headers hooks set on the answer (e.g. Keyguard's own x-ratelimit-*), over Azure's.
    response_headers: dict[str, str] = field(default_factory=dict)
    # What the stages decided:
    policy: PolicyOutcome | None = None  # authorisation (with a policy configured)
    payload_changed: bool = False  # a stage edited ``payload``: the body is re-serialised
    # awaited before anything of the answer reaches the client (a check running beside the
    # upstream call holds the answer until its verdict; it raises to refuse)
    hold: Callable[[], Awaitable[None]] | None = None
    cost: float | None = None  # the request's cost in the limits' currency (when priced)
    response_body: bytes | None = None  # kept only when the audit records content
    # the guardrails' decisions (request and answer): category, detector, action, where, role,
    # a keyed fingerprint of the value; never the value
    guardrails: list[dict[str, str]] = field(default_factory=list)
    answer_guard: AnswerGuard | None = None  # the guardrails over the answer, when in force


def client_fingerprint(headers: HeaderLookup) -> str | None:
    """The OpenAI SDKs' platform headers (language, OS, arch, runtime) as one short string."""
    lang = headers.get("x-stainless-lang")
    if lang is None:
        return None
    return "/".join(
        (headers.get(name) or "")[:32]
        for name in (
            "x-stainless-lang",
            "x-stainless-package-version",
            "x-stainless-os",
            "x-stainless-arch",
            "x-stainless-runtime",
            "x-stainless-runtime-version",
        )
    )
