"""Azure's per-deployment rate limits as pure arithmetic over ``now``.

Azure charges a request's *estimated* tokens when the request arrives (prompt + ``max_tokens``
per choice, or a default when ``max_tokens`` is absent) against a per-minute token counter,
and counts requests on short windows: a deployment with ``rpm`` requests per minute accepts
``rpm // 6`` requests per 10-second window (``rpm`` below 6: ``rpm`` per minute). Windows are
aligned on the clock (``floor(now / 60) * 60``). A refused request is not charged.

Nothing here reads a clock or awaits: :func:`decide` takes the current :class:`Windows`, the
limits, ``now`` and the cost, and returns a :class:`Decision` holding the next ``Windows``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Limits", "Windows", "Decision", "estimate_cost", "decide", "UNLIMITED"]

TOKEN_WINDOW = 60.0
SHORT_WINDOW = 10.0
#: Reported as remaining tokens/requests when a limit is 0 (unlimited).
UNLIMITED = -1


@dataclass(frozen=True, slots=True)
class Limits:
    tpm: int = 0
    rpm: int = 0

    @property
    def request_window(self) -> float:
        return SHORT_WINDOW if self.rpm >= 6 else TOKEN_WINDOW

    @property
    def requests_per_window(self) -> int:
        return self.rpm // 6 if self.rpm >= 6 else self.rpm


@dataclass(frozen=True, slots=True)
class Windows:
    """Counters of one deployment: the current token minute and request window."""

    token_start: float = -1.0
    tokens_used: int = 0
    request_start: float = -1.0
    requests_used: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    windows: Windows
    remaining_tokens: int = UNLIMITED
    remaining_requests: int = UNLIMITED
    #: ``"call"`` (RPM) or ``"token"`` (TPM) when refused.
    exceeded: Literal["call", "token"] | None = None
    retry_after_ms: int = 0


def estimate_cost(
    prompt_tokens: int, max_tokens: int | None, choices: int = 1, default_max_tokens: int = 1024
) -> int:
    """Azure's request-time estimate: prompt + max_tokens for each choice (or best_of)."""
    completion = default_max_tokens if max_tokens is None else max_tokens
    return prompt_tokens + completion * max(1, choices)


def _window_start(now: float, width: float) -> float:
    return math.floor(now / width) * width


def _retry_ms(start: float, width: float, now: float) -> int:
    return max(1, math.ceil((start + width - now) * 1000))


def decide(windows: Windows, limits: Limits, now: float, cost: int) -> Decision:
    """Admit or refuse one request of ``cost`` estimated tokens at time ``now``."""
    token_start = _window_start(now, TOKEN_WINDOW)
    tokens_used = windows.tokens_used if windows.token_start == token_start else 0
    width = limits.request_window
    request_start = _window_start(now, width)
    requests_used = windows.requests_used if windows.request_start == request_start else 0
    current = Windows(token_start, tokens_used, request_start, requests_used)

    per_window = limits.requests_per_window
    if limits.rpm and requests_used + 1 > per_window:
        return Decision(
            False,
            current,
            exceeded="call",
            retry_after_ms=_retry_ms(request_start, width, now),
        )
    if limits.tpm and tokens_used + cost > limits.tpm:
        return Decision(
            False,
            current,
            exceeded="token",
            retry_after_ms=_retry_ms(token_start, TOKEN_WINDOW, now),
        )
    after = Windows(token_start, tokens_used + cost, request_start, requests_used + 1)
    return Decision(
        True,
        after,
        remaining_tokens=limits.tpm - after.tokens_used if limits.tpm else UNLIMITED,
        remaining_requests=per_window - after.requests_used if limits.rpm else UNLIMITED,
    )
