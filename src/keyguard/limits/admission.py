"""The limits hook of the pipeline: estimate, reserve atomically, refuse or admit; then settle.

``admit`` runs after authorisation: the request's tokens are estimated (the default
``max_tokens`` cap written into the payload if the app set none), its cost priced, and one
atomic reservation made against every applicable limit. A refusal reserves nothing and is
Azure's 429 with ``retry-after`` and ``retry-after-ms``; an admission sets
``x-ratelimit-remaining-tokens`` / ``-requests`` for the tightest limit.

``settle`` runs for every admitted request, whatever happened upstream, and corrects the
reservation to what was really used:

* the ``usage`` Azure reported (JSON answer, or the stream's usage chunk);
* a stream that ended without usage (client gone, upstream broke off): the prompt estimate
  plus the tokens of the text actually streamed;
* an answer without usage: the estimate; an upstream error or no answer: nothing.

It also frees the concurrency slots. Crossing a budget's soft threshold (reserved plus settled
spend) emits one ``budget_soft_threshold`` security event per budget window, whichever replica
sees it first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from ..errors import TooManyRequests
from ..events import EventBus, SecurityEvent
from ..proxy.context import RequestContext
from .backend import EXPIRY_GRACE_S, Backend, BackendUnavailable, LimitsUnavailable
from .estimator import Estimate, Estimator
from .model import Line, Refusal, check, crossed_soft, remaining, retry_after_headers
from .prices import UnitPrice, cost_micro, from_micro
from .rules import Rules, Subject

__all__ = ["LimitAdmission", "HELD"]

log = logging.getLogger("keyguard.limits")

HELD = "limits"  # ctx.extra key of the reservation in flight
CHARGED = "limits_charged"  # ctx.extra key of what was charged at settlement
_SHOULD_NOT_RETRY_AFTER_S = 60.0


class Held(NamedTuple):  # a tuple: built for every request
    backend: Backend
    lines: Sequence[Line]
    estimate: Estimate
    price: UnitPrice | None
    model: str


class LimitAdmission:
    def __init__(
        self,
        *,
        rules: Rules,
        estimator: Estimator,
        backend: Backend,
        fallback: Backend | None = None,
        fallback_fraction: float = 1.0,
        models: Mapping[str, str],
        prices: Mapping[str, UnitPrice],
        currency: str = "USD",
        events: EventBus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = rules
        self._estimator = estimator
        self._backend = backend
        self._fallback = fallback
        self._fraction = fallback_fraction
        self._models = models
        self._prices = prices
        self._currency = currency
        self._events = events or EventBus()
        self._clock = clock
        self._priced = rules.has_budgets

    async def start(self) -> None:
        await self._backend.start()
        if self._fallback is not None:
            await self._fallback.start()

    async def close(self) -> None:
        await self._backend.close()
        if self._fallback is not None:
            await self._fallback.close()

    async def admit(self, ctx: RequestContext) -> None:
        deployment = ctx.deployment
        assert deployment is not None
        model = self._models.get(deployment, deployment)
        estimate = await self._estimator.estimate(ctx, model)
        price = self._prices.get(deployment) if self._priced else None
        cost = (
            cost_micro(price, estimate.prompt_tokens, 0, estimate.completion_tokens)
            if price is not None
            else 0
        )
        principal = ctx.principal
        subject = Subject(
            principal.key_id if principal is not None else None,
            principal.app if principal is not None else None,
            deployment,
        )
        now = self._clock()
        lines = self._rules.lines(subject, estimate.tokens, cost, now)
        if not lines:
            return
        backend = self._backend
        try:
            outcome = await backend.reserve(ctx.request_id, lines, now)
        except BackendUnavailable:
            if self._fallback is None:
                raise LimitsUnavailable(
                    "Keyguard cannot check this request against its limits right now (the "
                    "shared limits store is unreachable). Retry in a moment.",
                    reason="limits_backend_unavailable",
                    headers=retry_after_headers(1.0),
                ) from None
            backend = self._fallback
            lines = [ln._replace(limit=max(1, int(ln.limit * self._fraction))) for ln in lines]
            outcome = await backend.reserve(ctx.request_id, lines, now)
        if not outcome.allowed:
            refusal = check(lines, outcome.levels, now)
            assert refusal is not None
            raise self._refused(refusal, ctx)
        tokens_left, requests_left = remaining(lines, outcome.levels)
        if tokens_left is not None:
            ctx.response_headers["x-ratelimit-remaining-tokens"] = str(tokens_left)
        if requests_left is not None:
            ctx.response_headers["x-ratelimit-remaining-requests"] = str(requests_left)
        ctx.extra[HELD] = Held(backend, lines, estimate, price, model)
        if self._priced:
            after = [level + ln.amount for ln, level in zip(lines, outcome.levels, strict=True)]
            await self._soft_alerts(ctx, backend, lines, outcome.levels, after)

    async def settle(self, ctx: RequestContext) -> None:
        held: Held | None = ctx.extra.pop(HELD, None)
        if held is None:
            return
        try:
            charged = self._charged(ctx, held)
            tokens, cost = charged if charged is not None else await self._charge_text(ctx, held)
            ctx.extra[CHARGED] = {"tokens": tokens, "cost_micro": cost}
            lines: list[Line] = []
            deltas: list[int] = []
            for line in held.lines:
                if line.kind == "tokens":
                    deltas.append(tokens - line.amount)
                elif line.kind == "cost":
                    deltas.append(cost - line.amount)
                elif line.kind == "concurrent":
                    deltas.append(-1)
                else:
                    continue
                lines.append(line)
            if not lines:
                return
            after = await held.backend.settle(ctx.request_id, lines, deltas, self._clock())
            if self._priced:
                before = [a - d if a >= 0 else -1 for a, d in zip(after, deltas, strict=True)]
                await self._soft_alerts(ctx, held.backend, lines, before, after)
        except Exception:
            log.exception("settling the limits of request %s failed", ctx.request_id)

    def _charged(self, ctx: RequestContext, held: Held) -> tuple[int, int] | None:
        """Tokens and cost (micro-units) really used by the request; ``None`` for a stream that
        ended without usage, whose streamed text must be counted first (:meth:`_charge_text`).
        Synchronous: the path of nearly every request."""
        estimate, usage = held.estimate, ctx.usage
        if usage is not None:
            prompt, cached, completion = (
                usage.prompt_tokens,
                usage.cached_tokens,
                usage.completion_tokens,
            )
        elif ctx.streamed:
            return None
        elif 200 <= ctx.upstream_status < 300:
            prompt, cached, completion = estimate.prompt_tokens, 0, estimate.completion_tokens
        else:
            return 0, 0
        return _priced(held, prompt, cached, completion)

    async def _charge_text(self, ctx: RequestContext, held: Held) -> tuple[int, int]:
        """A stream cut short: its prompt as estimated, the text it streamed counted."""
        text = "".join(ctx.streamed_text)
        completion = await self._count(held.model, text) if text else 0
        return _priced(held, held.estimate.prompt_tokens, 0, completion)

    async def _count(self, model: str, text: str) -> int:
        if len(text) > 16_384:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self._estimator.count_text, model, text)
        return self._estimator.count_text(model, text)

    def _refused(self, refusal: Refusal, ctx: RequestContext) -> TooManyRequests:
        line = refusal.line
        ctx.response_headers.update(_remaining_header(refusal))
        if line.kind == "cost":
            limit = f"{from_micro(line.limit):.2f} {self._currency}"
            what = f"The {line.label} ({limit}) is spent"
        else:
            what = f"The {line.label} ({line.limit}) is reached"
        if refusal.retry_after_s is None:
            return TooManyRequests(
                f"This request needs {line.amount} of the {line.label}, more than its limit of "
                f"{line.limit}: it can never pass. Lower max_tokens or shorten the prompt.",
                reason=f"limit_{line.kind}_too_large",
                headers={"x-should-retry": "false"},
            )
        seconds = refusal.retry_after_s
        headers = retry_after_headers(seconds)
        if seconds > _SHOULD_NOT_RETRY_AFTER_S:
            headers["x-should-retry"] = "false"
        return TooManyRequests(
            f"{what}. Please retry after {headers['retry-after']} seconds.",
            reason=f"limit_{line.kind}",
            headers=headers,
        )

    async def _soft_alerts(
        self,
        ctx: RequestContext,
        backend: Backend,
        lines: Sequence[Line],
        before: Sequence[int],
        after: Sequence[int],
    ) -> None:
        for line, b, a in zip(lines, before, after, strict=True):
            if b < 0 or not crossed_soft(line, b, a):
                continue
            if not await backend.first_alert(line.key, line.window_end + EXPIRY_GRACE_S):
                continue
            principal = ctx.principal
            spent = f"{from_micro(a):.2f} {self._currency}"
            limit = f"{from_micro(line.limit):.2f} {self._currency}"
            self._events.emit(
                SecurityEvent(
                    created=datetime.now(UTC),
                    kind="budget_soft_threshold",
                    severity="medium",
                    summary=f"The {line.label} passed its soft threshold: {spent} of {limit}.",
                    key_id=principal.key_id if principal is not None else None,
                    app=principal.app if principal is not None else None,
                    evidence={
                        "budget": line.label,
                        "counter": line.key,
                        "spent_micro": a,
                        "soft_micro": line.soft,
                        "limit_micro": line.limit,
                        "currency": self._currency,
                    },
                )
            )


def _remaining_header(refusal: Refusal) -> dict[str, str]:
    line = refusal.line
    left = str(max(0, line.limit - refusal.level))
    if line.kind == "tokens":
        return {"x-ratelimit-remaining-tokens": left}
    if line.kind == "requests":
        return {"x-ratelimit-remaining-requests": left}
    return {}


def _priced(held: Held, prompt: int, cached: int, completion: int) -> tuple[int, int]:
    """Tokens and cost (micro-units, 0 without a price) of what a request used."""
    price = held.price
    cost = cost_micro(price, prompt, cached, completion) if price is not None else 0
    return prompt + completion, cost
