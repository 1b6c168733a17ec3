"""The policy evaluator: a pure function of (policy, principal, request facts, now).

Default deny. A request is allowed only by a binding that names one of the principal's subjects
and whose role grants everything the request does, checked in this order::

    binding window ─► role window ─► operation ─► deployment ─► source network
                  ─► streaming ─► max output tokens ─► prompt size

The first binding (in declaration order) that passes every check allows the request. When none
does, the denial reported is the one of the binding that got furthest: a principal whose only
role grants ``gpt-4o-mini`` and who asks for ``gpt-4o`` hears ``DeploymentNotAllowed``, not
that some other check failed first; between two caps, the higher one is reported (it is what
the caller may ask for). Missing facts fail closed (an unknown client address never
matches a source network; a capped role needs ``max_tokens``).

Every other binding that allows the request too is noted (``Decision.roles``): the guardrails
in force are the strictest of all those roles' (:mod:`.guardrails`), so a second, laxer grant
never loosens a stricter one.

A principal's subjects: a Keyguard key is ``key:<id>`` and ``app:<app>``; an Entra app is
``app:<name>``; an agent is ``agent:<name>`` only (it never inherits its parent app's
bindings); a user is ``user:<oid>``; Entra principals add ``group:<id>`` per group and
``approle:<value>`` per app role in their token.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from ..core.principal import Principal
from .compiled import Binding, Policy

__all__ = [
    "Decision",
    "Denial",
    "Explanation",
    "GENERATIVE_OPERATIONS",
    "RequestFacts",
    "Trace",
    "check_binding",
    "evaluate",
    "explain",
    "subjects_of",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
GENERATIVE_OPERATIONS = frozenset({"chat", "completions", "responses"})

# Stages: how far a binding got before it failed (higher = more specific denial).
_WINDOW, _OPERATION, _DEPLOYMENT, _SOURCE, _STREAMING, _TOKENS, _PROMPT = range(1, 8)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the policy looks at in a request (read by :mod:`.facts`)."""

    operation: str
    deployment: str | None = None  # None: an operation on no deployment (model list)
    stream: bool = False
    max_output_tokens: int | None = None  # None: the request sets no (valid) cap
    prompt_chars: int | None = None  # None: not measured
    source: IPAddress | None = None  # None: unknown client address


@dataclass(frozen=True, slots=True)
class Denial:
    code: str  # Azure error code the client sees (DeploymentNotAllowed, ...)
    reason: str  # machine reason for logs and audit (deployment_not_allowed, ...)
    message: str  # for the client: actionable, about its own request and limits only
    detail: str = ""  # for operators (explain): may name roles and patterns
    stage: int = 0
    binding: str | None = None
    role: str | None = None
    limit: int = 0  # the role's cap, for caps: among equal stages the highest is reported


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    binding: str | None = None
    role: str | None = None
    denial: Denial | None = None
    # every role that allows the request (the guardrails in force combine them), in order
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Trace:
    binding: str
    role: str
    subject: str
    denial: Denial | None  # None: this binding allows the request


@dataclass(frozen=True, slots=True)
class Explanation:
    principal: str
    subjects: tuple[str, ...]
    decision: Decision
    traces: tuple[Trace, ...]


def subjects_of(principal: Principal) -> tuple[str, ...]:
    """Every subject a binding may name to reach ``principal``."""
    if principal.kind in ("key", "cert"):  # a key or a client certificate: its app's
        return (principal.id, f"app:{principal.app}")
    extra = tuple(f"group:{g}" for g in principal.groups) + tuple(
        f"approle:{r}" for r in principal.roles
    )
    return (principal.id, *extra)


def _window(
    kind: str, start: datetime | None, end: datetime | None, now: datetime, who: str
) -> Denial | None:
    if start is not None and now < start:
        return Denial(
            "RoleNotYetValid",
            "role_not_yet_valid",
            f"Access denied: {who}'s access is not valid yet. Retry after "
            f"{start.isoformat()}, or ask the gateway's operators.",
            f"{kind} starts at {start.isoformat()}",
            _WINDOW,
        )
    if end is not None and now >= end:
        return Denial(
            "RoleExpired",
            "role_expired",
            f"Access denied: {who}'s access expired. Ask the gateway's operators to renew it.",
            f"{kind} ended at {end.isoformat()}",
            _WINDOW,
        )
    return None


def _check(binding: Binding, facts: RequestFacts, now: datetime, who: str) -> Denial | None:
    role = binding.role
    denial = _window("binding", binding.not_before, binding.not_after, now, who) or _window(
        "role", role.not_before, role.not_after, now, who
    )
    if denial is not None:
        return denial
    if facts.operation not in role.operations:
        return Denial(
            "OperationNotAllowed",
            "operation_not_allowed",
            f"Access denied: {who} may not use the '{facts.operation}' operation on this "
            "gateway. Ask the gateway's operators for a role that includes it.",
            f"operation {facts.operation} not in {sorted(role.operations)}",
            _OPERATION,
        )
    deployment = facts.deployment
    if deployment is not None and not role.grants_deployment(deployment):
        return Denial(
            "DeploymentNotAllowed",
            "deployment_not_allowed",
            f"Access denied: deployment '{deployment}' is not granted to {who}. Use a "
            "deployment your role includes, or ask the gateway's operators.",
            f"deployment {deployment} matches none of {list(role.patterns)}",
            _DEPLOYMENT,
        )
    if role.networks and (
        facts.source is None or not any(facts.source in net for net in role.networks)
    ):
        shown = str(facts.source) if facts.source is not None else "an unknown address"
        return Denial(
            "SourceNetworkNotAllowed",
            "source_network_not_allowed",
            f"Access denied: requests from {shown} are not allowed for {who}. Call from a "
            "network your role allows.",
            f"source {shown} not in {[str(n) for n in role.networks]}",
            _SOURCE,
        )
    if facts.stream and not role.streaming:
        return Denial(
            "StreamingNotAllowed",
            "streaming_not_allowed",
            f"Access denied: streaming is not allowed for {who}. Send the request without "
            "'stream: true'.",
            "role does not allow streaming",
            _STREAMING,
        )
    cap = role.max_output_tokens
    if cap is not None and facts.operation in GENERATIVE_OPERATIONS:
        asked = facts.max_output_tokens
        if asked is None:
            return Denial(
                "MaxTokensRequired",
                "max_tokens_required",
                f"Access denied: {who}'s role caps output at {cap} tokens. Set max_tokens or "
                f"max_completion_tokens (max_output_tokens for responses) to at most {cap}.",
                f"request sets no output cap; role caps at {cap}",
                _TOKENS,
                limit=cap,
            )
        if asked > cap:
            return Denial(
                "MaxTokensAboveRoleLimit",
                "max_tokens_above_role_limit",
                f"Access denied: the request asks for up to {asked} output tokens; {who}'s "
                f"role allows at most {cap}. Lower max_tokens / max_completion_tokens.",
                f"output cap {asked} above {cap}",
                _TOKENS,
                limit=cap,
            )
    limit = role.max_prompt_chars
    if limit is not None and (facts.prompt_chars is None or facts.prompt_chars > limit):
        size = "unknown" if facts.prompt_chars is None else str(facts.prompt_chars)
        return Denial(
            "PromptAboveRoleLimit",
            "prompt_above_role_limit",
            f"Access denied: the prompt is {size} characters; {who}'s role allows at most "
            f"{limit}. Shorten the messages.",
            f"prompt {size} characters above {limit}",
            _PROMPT,
            limit=limit,
        )
    return None


def _named(denial: Denial, binding: Binding) -> Denial:
    return Denial(
        denial.code,
        denial.reason,
        denial.message,
        denial.detail,
        denial.stage,
        binding.name,
        binding.role.name,
        denial.limit,
    )


def check_binding(
    binding: Binding, facts: RequestFacts, now: datetime, who: str = "this principal"
) -> Denial | None:
    """``None`` when ``binding`` allows the request, else why not (binding and role named)."""
    denial = _check(binding, facts, now, who)
    return None if denial is None else _named(denial, binding)


def _no_binding(who: str) -> Denial:
    return Denial(
        "NoRoleAssigned",
        "no_role_assigned",
        f"Access denied: {who} has no role on this gateway. Ask the gateway's operators to "
        "bind it to a role.",
        "no binding names any of the principal's subjects",
    )


def _candidates(policy: Policy, subjects: tuple[str, ...]) -> list[tuple[Binding, str]]:
    found: dict[int, tuple[Binding, str]] = {}
    for subject in subjects:
        for binding in policy.by_subject.get(subject, ()):
            found.setdefault(binding.index, (binding, subject))
    return [found[i] for i in sorted(found)]


def evaluate(policy: Policy, principal: Principal, facts: RequestFacts, now: datetime) -> Decision:
    """Allow with the first granting binding, or deny with the most specific reason."""
    subjects = subjects_of(principal)
    index = policy.by_subject
    direct = index.get(subjects[0], ())
    if len(direct) == 1 and not any(s in index for s in subjects[1:]):
        candidates = [(direct[0], subjects[0])]  # the common case: one binding, no sorting
    else:
        candidates = _candidates(policy, subjects)
    best: Denial | None = None
    for position, (binding, _) in enumerate(candidates):
        denial = _check(binding, facts, now, principal.id)
        if denial is None:
            roles = [binding.role.name]
            for other, _ in candidates[position + 1 :]:  # the guardrails of every granting role
                if other.role.name not in roles and _check(other, facts, now, "") is None:
                    roles.append(other.role.name)
            return Decision(True, binding.name, binding.role.name, roles=tuple(roles))
        denial = _named(denial, binding)
        if best is None or (denial.stage, denial.limit) > (best.stage, best.limit):
            best = denial
    return Decision(False, denial=best or _no_binding(principal.id))


def explain(
    policy: Policy, principal: Principal, facts: RequestFacts, now: datetime
) -> Explanation:
    """The decision and, for every binding that names the principal, what it said."""
    subjects = subjects_of(principal)
    traces = tuple(
        Trace(
            binding.name,
            binding.role.name,
            subject,
            check_binding(binding, facts, now, principal.id),
        )
        for binding, subject in _candidates(policy, subjects)
    )
    return Explanation(principal.id, subjects, evaluate(policy, principal, facts, now), traces)
