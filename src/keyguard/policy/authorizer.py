"""The proxy's :class:`~keyguard.core.hooks.Authorizer` when a policy is configured.

Per request: read the facts the policy needs (the prompt is measured and the client address
parsed only when some role asks for it), evaluate the policy in force (a pure function over
precompiled bindings; no store query, no I/O), and either note the granting binding in
``ctx.policy`` or raise a 403 in Azure's shape whose ``code`` says what to change
(``DeploymentNotAllowed``, ``MaxTokensAboveRoleLimit``, ...). The denial's reason goes to
``ctx.reason`` through the error, so the access log and every recorder see it; the operator
detail (binding, role, what failed) is in ``ctx.policy``, never in the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..core.request import PolicyOutcome, RequestContext
from ..errors import AuthenticationFailed, PermissionDenied
from .compiled import Policy
from .evaluate import evaluate
from .facts import request_facts

__all__ = ["PolicyAuthorizer"]


class PolicyAuthorizer:
    def __init__(self, current: Callable[[], Policy]) -> None:
        self._current = current

    def authorize(self, ctx: RequestContext, now: datetime) -> None:
        principal = ctx.principal
        if principal is None:  # pragma: no cover - the handler authenticates first
            raise AuthenticationFailed("Access denied: no credential.", reason="unauthenticated")
        policy = self._current()
        facts = request_facts(
            ctx, measure_prompt=policy.needs_prompt_size, parse_source=policy.needs_source
        )
        decision = evaluate(policy, principal, facts, now)
        if decision.allowed:
            ctx.policy = PolicyOutcome(decision.binding, decision.role, roles=decision.roles)
            return
        denial = decision.denial
        assert denial is not None
        ctx.policy = PolicyOutcome(denial.binding, denial.role, denial.reason, denial.detail)
        raise PermissionDenied(denial.message, code=denial.code, reason=denial.reason)
