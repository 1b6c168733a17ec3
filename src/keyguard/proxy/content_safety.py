"""The content-safety stage: the model-based guardrail (Azure AI Content Safety) on a request.

:meth:`SafetyStage.start` begins the check on the request's texts (user, system, developer
and Responses/embeddings input as prompts; tool results as documents) and returns a
:class:`PendingCheck`, or ``None`` when there is nothing to check. The handler awaits
:meth:`PendingCheck.settle` before forwarding (``mode: before``), or forwards at once and has
the answer held until it (``mode: concurrent``: ``ctx.hold`` for a stream's first byte, the
handler itself for a whole answer).

A flag is handled by the role's action for its family (``attack``: jailbreak, indirect
attack; ``harm``: harm categories and blocklists): ``block`` (``redact`` too: a verdict has
nothing to redact) refuses with Azure's content-filter error (400 ``content_filter``);
``alert`` forwards and raises a security event; ``log`` forwards and logs; ``off`` does not
ask. The roles come from ``actions_of(ctx)`` (the guardrails of every role that allows the
request, :class:`~keyguard.policy.guardrails.Effective`): a role that names an action for the
family (or an override for the category) is judged by it, any other by the section's
``on_attack``/``on_harm``; the strictest of the roles wins (:func:`role_action`).

When the service cannot answer (timeout, error, garbage) the declared ``on_error`` applies:
``block`` refuses with a 503 that says so, ``allow`` serves the request and records a
security event (at most one a second, with the count of requests since the last).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from ..core.request import RequestContext
from ..errors import ContentFiltered, GuardUnavailable, RequestError, UpstreamError
from ..events import EventBus, SecurityEvent
from ..guard import extract
from ..guard.actions import Action
from ..guard.content_safety_settings import ContentSafetySettings
from ..guard.findings import ModelVerdict, Slot
from ..policy.guardrails import Effective, GuardActions, rank

__all__ = ["SafetyStage", "PendingCheck", "texts", "filter_result", "role_action"]

log = logging.getLogger("keyguard.guard")

_PROMPT_ROLES = frozenset({"user", "system", "developer", "input"})
_DOCUMENT_ROLES = frozenset({"tool"})
_ATTACKS = ("jailbreak", "indirect_attack")
_HARMS = ("hate", "self_harm", "sexual", "violence")
_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)


class Actions(Protocol):
    def action(self, family: str, category: str) -> Action: ...


class Checker(Protocol):
    async def check(
        self,
        prompts: Sequence[str],
        documents: Sequence[str],
        *,
        shields: bool = True,
        analyses: bool = True,
    ) -> ModelVerdict: ...


class _Defaults:
    """The settings' actions, for a request whose roles name none."""

    def __init__(self, attack: Action, harm: Action) -> None:
        self._by_family = {"attack": attack, "harm": harm}

    def action(self, family: str, category: str) -> Action:
        return self._by_family.get(family, "block")


def role_action(role: GuardActions, family: str, category: str, default: Action) -> Action:
    """One role's action for a model verdict: its override for the category, else its action
    for the family when it names one, else ``default`` (the section's)."""
    override = role.categories.get(category)
    if override is not None:
        return override
    if family in role.model_fields_set:
        named: Action = getattr(role, family)
        return named
    return default


class _ByRoles:
    """The strictest of the roles' actions (:func:`role_action`)."""

    def __init__(self, roles: Sequence[GuardActions], defaults: _Defaults) -> None:
        self._roles = roles
        self._defaults = defaults

    def action(self, family: str, category: str) -> Action:
        default = self._defaults.action(family, category)
        found: Action = "off"
        for role in self._roles:
            own = role_action(role, family, category, default)
            if rank(own) > rank(found):
                found = own
        return found


def texts(slots: Sequence[Slot]) -> tuple[list[str], list[str]]:
    """A request's slots as Prompt Shields takes them: prompts (user, system, developer,
    input) and documents (tool results). Assistant turns and tool-call arguments are the
    model's own words, not checked as attacks."""
    prompts = [s.text for s in slots if s.role in _PROMPT_ROLES]
    documents = [s.text for s in slots if s.role in _DOCUMENT_ROLES]
    return prompts, documents


def family_of(category: str) -> str:
    return "attack" if category in _ATTACKS else "harm"


_SEVERITY_NAMES = ("safe", "safe", "low", "low", "medium", "medium", "high", "high")


def filter_result(verdict: ModelVerdict) -> dict[str, Any]:
    """``innererror.content_filter_result`` for a flagged verdict, as Azure names it."""
    category = verdict.category or "jailbreak"
    if category in _ATTACKS:
        return {category: {"filtered": True, "detected": True}}
    if category.startswith("blocklist:"):
        name = category.partition(":")[2]
        details = [{"filtered": True, "id": name}]
        return {"custom_blocklists": {"filtered": True, "details": details}}
    severity = _SEVERITY_NAMES[min(max(verdict.severity or 0, 0), 7)]
    return {category: {"filtered": True, "severity": severity}}


def _strict(action: Action) -> Action:
    return "block" if action == "redact" else action


class SafetyStage:
    def __init__(
        self,
        guard: Checker,
        settings: ContentSafetySettings,
        events: EventBus,
        *,
        actions_of: Callable[[RequestContext], Effective | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._guard = guard
        self._settings = settings
        self._events = events
        self._actions_of = actions_of or (lambda ctx: None)
        self._defaults = _Defaults(settings.on_attack, settings.on_harm)
        self._clock = clock
        self._last_note = -1e9
        self._unnoted = 0
        self.concurrent = settings.mode == "concurrent"

    def start(self, ctx: RequestContext) -> PendingCheck | None:
        """Begin the check of ``ctx``'s request, or ``None`` when there is nothing to ask."""
        payload, route = ctx.payload, ctx.route
        if payload is None or route is None:
            return None
        effective = self._actions_of(ctx)
        actions: Actions = (
            self._defaults if effective is None else _ByRoles(effective.roles, self._defaults)
        )
        categories = [*_HARMS, *(f"blocklist:{n}" for n in self._settings.blocklists)]
        shields = any(_strict(actions.action("attack", c)) != "off" for c in _ATTACKS)
        analyses = any(_strict(actions.action("harm", c)) != "off" for c in categories)
        if not (shields or analyses):
            return None
        prompts, documents = texts(extract.request_slots(route.operation.name, payload))
        if not prompts and not documents:
            return None
        task = asyncio.ensure_future(
            self._guard.check(prompts, documents, shields=shields, analyses=analyses)
        )
        return PendingCheck(self, ctx, actions, task)

    def _unavailable(self, ctx: RequestContext, exc: GuardUnavailable) -> None:
        if self._settings.on_error == "block":
            log.warning("content safety unavailable for request %s: %s", ctx.request_id, exc)
            raise UpstreamError(
                "The content safety check could not be completed, so the request was not "
                "served (this gateway fails closed). Retry later.",
                status=503,
                code="ContentSafetyUnavailable",
                reason="content_safety_unavailable",
            )
        ctx.reason = "content_safety_unchecked"
        self._unnoted += 1
        now = self._clock()
        if now - self._last_note < 1.0:
            return
        log.warning(
            "content safety unavailable, request %s served unchecked: %s", ctx.request_id, exc
        )
        self._note(ctx, "content_safety_unavailable", "low", str(exc), {"requests": self._unnoted})
        self._last_note, self._unnoted = now, 0

    def _note(
        self, ctx: RequestContext, kind: str, severity: Any, summary: str, evidence: dict[str, Any]
    ) -> None:
        principal = ctx.principal
        self._events.emit(
            SecurityEvent(
                created=datetime.now(UTC),
                kind=kind,
                severity=severity,
                summary=summary,
                key_id=principal.key_id if principal is not None else None,
                app=principal.app if principal is not None else None,
                source=ctx.remote,
                evidence={"request_id": ctx.request_id, **evidence},
            )
        )


class PendingCheck:
    """One request's check in flight; :meth:`settle` applies its verdict (once)."""

    def __init__(
        self,
        stage: SafetyStage,
        ctx: RequestContext,
        actions: Actions,
        task: asyncio.Future[ModelVerdict],
    ) -> None:
        self._stage = stage
        self._ctx = ctx
        self._actions = actions
        self._task = task
        self._settled = False

    async def settle(self) -> None:
        """Wait for the verdict and apply it: return to go on, raise to refuse."""
        if self._settled:
            return
        self._settled = True
        ctx = self._ctx
        try:
            verdict = await self._task
        except GuardUnavailable as exc:
            self._stage._unavailable(ctx, exc)
            return
        except Exception as exc:  # never a 500 for the guardrail's own failure
            if not isinstance(exc, RequestError):
                log.exception("content safety check of request %s failed", ctx.request_id)
                self._stage._unavailable(ctx, GuardUnavailable("content safety check failed"))
                return
            raise
        if not verdict.flagged or verdict.category is None:
            return
        category = verdict.category
        action = _strict(self._actions.action(family_of(category), category))
        if action == "block":
            reason = f"content_filter:{category}"[:64]  # bounded: categories come from config
            raise ContentFiltered(_MESSAGE, filter_result(verdict), reason=reason)
        if action == "alert":
            self._stage._note(
                ctx,
                "content_safety_flagged",
                "medium",
                f"Content safety flagged a request ({category}); it was served (action alert).",
                {"category": category, "severity": verdict.severity},
            )
        elif action == "log":
            log.info("content safety flagged request %s (%s); served", ctx.request_id, category)

    def cancel(self) -> None:
        """Stop a check whose verdict is no longer needed (the request failed otherwise)."""
        if not self._task.done():
            self._task.cancel()
        elif not self._task.cancelled():
            with contextlib.suppress(BaseException):
                self._task.exception()  # retrieved: no "never retrieved" warning
