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

It also frees the concurrency slots, and leaves the request's cost (in the price table's
currency) in ``ctx.cost`` for the monitor when its deployment has a price. Crossing
a budget's soft threshold (reserved plus settled spend) emits one ``budget_soft_threshold``
security event per budget window, whichever replica sees it first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from ..core.request import RequestContext
from ..errors import TooManyRequests
from ..events import EventBus, SecurityEvent
from .backend import (
    EXPIRY_GRACE_S,
    Backend,
    BackendUnavailable,
    ImmediateBackend,
    LimitsUnavailable,
    Outcome,
)
from .estimator import Estimate, Estimator, Large
from .model import Line, Plan, Refusal, check, crossed_soft, remaining, retry_after_headers
from .prices import MICRO, UnitPrice, cost_micro, from_micro
from .rules import Rules
from .usage import UsageReader

__all__ = ["LimitAdmission", "Held"]

log = logging.getLogger("keyguard.limits")

_SHOULD_NOT_RETRY_AFTER_S = 60.0
#: retry-after when a request fits the limits but not this replica's share during an outage
_OUTAGE_RETRY_S = 5.0
#: an injected cap is never lowered below this many tokens (a shorter answer is no answer)
_MIN_INJECTED = 16


def money(amount: Decimal) -> str:
    """A limit in currency: two decimals, more when a small budget needs them (0.005)."""
    text = f"{amount:.2f}"
    if amount and Decimal(text) != amount:
        text = f"{amount:.6f}".rstrip("0")
    return text


def _how_to_fit(ctx: RequestContext) -> str:
    """What the caller can lower: the answer's cap is named as the API in use names it."""
    operation = ctx.route.operation.name if ctx.route is not None else ""
    if operation == "responses":
        return "Lower max_output_tokens or shorten the input."
    if operation == "embeddings":
        return "Shorten the input."
    return "Lower max_tokens (max_completion_tokens) or shorten the prompt."


def _reduced_during_outage(refusal: Refusal) -> TooManyRequests:
    """A request the limits allow, above this replica's share while the shared store is
    unreachable: retryable, once the store is back."""
    return TooManyRequests(
        f"This request needs {refusal.amount} of the {refusal.line.label}; while the shared "
        "limits store is unreachable, each replica allows only a share of it. Retry in a moment.",
        reason=f"limit_{refusal.line.kind}_outage",
        headers=retry_after_headers(_OUTAGE_RETRY_S),
    )


class Held(NamedTuple):  # a tuple: built for every request
    """A reservation in flight: what :meth:`LimitAdmission.admit` hands the handler and the
    handler hands back to :meth:`LimitAdmission.settle`."""

    backend: Backend
    plan: Plan | None  # None: no limit applies, the request is only priced
    estimate: Estimate
    cost: int  # the estimated cost reserved, micro-units
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
        # An in-process backend is called without an await (it never waits).
        self._local = backend if isinstance(backend, ImmediateBackend) else None
        self._fallback = fallback
        self._fraction = fallback_fraction
        self._scaled_plans: dict[int, tuple[Plan, Plan]] = {}  # id(plan) -> (plan, scaled)
        self._models = models
        self._prices = prices
        self._currency = currency
        self._events = events or EventBus()
        self._clock = clock
        self._budgets = rules.has_budgets

    async def start(self) -> None:
        await self._backend.start()
        if self._fallback is not None:
            await self._fallback.start()

    async def close(self) -> None:
        await self._backend.close()
        if self._fallback is not None:
            await self._fallback.close()

    def reader(self) -> UsageReader:
        """The usage read-out over these rules and this backend (the shared one: a replica on
        its local fallback cannot read what the others enforce), on this hook's clock."""
        return UsageReader(self._rules, self._backend, lambda: self._clock())

    @property
    def backend_healthy(self) -> bool:
        """The counters' backend answers (an in-process one always does)."""
        return bool(getattr(self._backend, "healthy", True))

    async def admit(self, ctx: RequestContext) -> Held | None:
        deployment = ctx.deployment
        assert deployment is not None
        model = self._models.get(deployment, deployment)
        estimate = self._estimator.estimate_now(ctx, model)
        if isinstance(estimate, Large):
            estimate = await self._estimator.finish(estimate)
        price = self._prices.get(deployment)
        tokens, cost = _priced(price, estimate.prompt_tokens, 0, estimate.completion_tokens)
        principal, now = ctx.principal, self._clock()
        if principal is not None:
            plan = self._rules.plan(principal.key_id, principal.app, deployment, tokens, cost, now)
        else:
            plan = self._rules.plan(None, None, deployment, tokens, cost, now)
        backend = self._backend
        if plan is None:
            if price is not None:  # nothing to hold, but the cost is still reported
                return Held(backend, None, estimate, cost, price, model)
            return None
        if estimate.injected and plan.token_at:  # the default cap must not be what refuses it
            room = min(plan.lines[i].limit for i in plan.token_at) - estimate.prompt_tokens
            if room < estimate.completion_tokens:
                estimate = self._estimator.lower_injected(ctx, estimate, room)
                tokens, cost = _priced(price, estimate.prompt_tokens, 0, estimate.completion_tokens)
        full = plan
        amounts = plan.amounts(tokens, cost)
        outcome, backend, plan = await self._reserve(ctx, plan, amounts, now)
        if not outcome.allowed and estimate.injected and plan.token_at:
            # The window is partly used: the injected cap lowered to what is left, once.
            left = min(plan.lines[i].limit - max(0, outcome.levels[i]) for i in plan.token_at)
            room = left - estimate.prompt_tokens
            lowered = estimate
            if room >= min(_MIN_INJECTED, estimate.completion_tokens):
                lowered = self._estimator.lower_injected(ctx, estimate, room)
            if lowered is not estimate:
                estimate = lowered
                tokens, cost = _priced(price, estimate.prompt_tokens, 0, estimate.completion_tokens)
                amounts = plan.amounts(tokens, cost)
                outcome, backend, plan = await self._reserve(ctx, plan, amounts, now, backend)
        levels = outcome.levels
        if not outcome.allowed:
            refusal = check(plan.lines, amounts, levels, now)
            assert refusal is not None
            if refusal.retry_after_s is None and plan is not full:  # the fallback's share only
                if full.lines[plan.lines.index(refusal.line)].limit >= refusal.amount:
                    raise _reduced_during_outage(refusal)
            raise self._refused(refusal, ctx)
        tokens_left, requests_left = remaining(plan, levels, tokens)
        if tokens_left is not None:
            ctx.response_headers["x-ratelimit-remaining-tokens"] = str(tokens_left)
        if requests_left is not None:
            ctx.response_headers["x-ratelimit-remaining-requests"] = str(requests_left)
        held = Held(backend, plan, estimate, cost, price, model)
        if self._budgets:
            after = [level + amount for amount, level in zip(amounts, levels, strict=True)]
            await self._soft_alerts(ctx, backend, plan.lines, levels, after)
        return held

    async def _reserve(
        self,
        ctx: RequestContext,
        plan: Plan,
        amounts: Sequence[int],
        now: float,
        backend: Backend | None = None,
    ) -> tuple[Outcome, Backend, Plan]:
        """Reserve ``amounts`` on the backend (``backend``: the one a first try used), or on
        the local fallback when the shared store is unreachable (under its scaled plan)."""
        local = self._local
        if backend is not None and backend is self._fallback:
            return await backend.reserve(ctx.request_id, plan, amounts, now), backend, plan
        try:
            if local is not None:
                return local.reserve_now(ctx.request_id, plan, amounts, now), local, plan
            return (
                await self._backend.reserve(ctx.request_id, plan, amounts, now),
                self._backend,
                plan,
            )
        except BackendUnavailable:
            if self._fallback is None:
                raise LimitsUnavailable(
                    "Keyguard cannot check this request against its limits right now (the "
                    "shared limits store is unreachable). Retry in a moment.",
                    reason="limits_backend_unavailable",
                    headers=retry_after_headers(1.0),
                ) from None
            plan = self._scaled(plan)
            outcome = await self._fallback.reserve(ctx.request_id, plan, amounts, now)
            return outcome, self._fallback, plan

    def _scaled(self, plan: Plan) -> Plan:
        """The plan under the local fallback's limits (cached: an outage sends every request
        this way)."""
        cached = self._scaled_plans.get(id(plan))
        if cached is None or cached[0] is not plan:
            if len(self._scaled_plans) >= 4096:
                self._scaled_plans.clear()
            cached = self._scaled_plans[id(plan)] = (plan, plan.scaled(self._fraction))
        return cached[1]

    async def settle(self, ctx: RequestContext, held: Held | None) -> None:
        if held is None:
            return
        try:
            price, usage = held.price, ctx.usage
            if usage is not None:  # nearly every request: no await before the backend's
                tokens, cost = _priced(
                    price, usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens
                )
            else:
                tokens, cost = await self._used_without_usage(ctx, held)
            if price is not None:
                ctx.cost = cost / MICRO  # for the monitor: metrics and detection
            plan = held.plan
            if plan is None or not plan.settled:
                return
            deltas = plan.deltas(tokens - held.estimate.tokens, cost - held.cost)
            backend, local, now = held.backend, self._local, self._clock()
            if local is not None and backend is local:
                after = local.settle_now(ctx.request_id, plan, deltas, now)
            else:
                after = await backend.settle(ctx.request_id, plan, deltas, now)
            if self._budgets:
                before = [a - d if a >= 0 else -1 for a, d in zip(after, deltas, strict=True)]
                await self._soft_alerts(ctx, backend, plan.settled, before, after)
        except Exception:
            log.exception("settling the limits of request %s failed", ctx.request_id)

    async def _used_without_usage(self, ctx: RequestContext, held: Held) -> tuple[int, int]:
        """Tokens and cost (micro-units) of a request whose answer reported no usage: a
        stream cut short is its prompt as estimated plus the text it streamed, counted; any
        other success its estimate; an upstream error or no answer nothing."""
        estimate, price = held.estimate, held.price
        if ctx.streamed:
            text = "".join(ctx.streamed_text)
            completion = await self._estimator.count_text(held.model, text) if text else 0
            return _priced(price, estimate.prompt_tokens, 0, completion)
        if 200 <= ctx.upstream_status < 300:
            return _priced(price, estimate.prompt_tokens, 0, estimate.completion_tokens)
        return 0, 0

    def _refused(self, refusal: Refusal, ctx: RequestContext) -> TooManyRequests:
        line = refusal.line
        ctx.response_headers.update(_remaining_header(refusal))
        if line.kind == "cost":
            limit = f"{money(from_micro(line.limit))} {self._currency}"
            what = f"The {line.label} ({limit}) is spent"
        else:
            what = f"The {line.label} ({line.limit}) is reached"
        if refusal.retry_after_s is None:
            need, most = str(refusal.amount), str(line.limit)
            if line.kind == "cost":
                need = f"{money(from_micro(refusal.amount))} {self._currency}"
                most = limit
            return TooManyRequests(
                f"This request needs {need} of the {line.label}, more than its limit of "
                f"{most}: it can never pass. {_how_to_fit(ctx)}",
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


def _priced(price: UnitPrice | None, prompt: int, cached: int, completion: int) -> tuple[int, int]:
    """Tokens and cost (micro-units, 0 without a price) of a request's usage or estimate."""
    cost = cost_micro(price, prompt, cached, completion) if price is not None else 0
    return prompt + completion, cost
