"""From the configuration to what keys declare: the ``limits:`` rules of keys and apps, and
the roles the policy binds to a key or its app (:mod:`keyguard.detect.declared` judges).

Only key- and app-scope rules count: a team's, a deployment's or the global rule is shared by
many keys and says nothing about one. A role bounds one request when it caps the prompt
(``max_prompt_chars``; a token is taken as at least one character) and, if it may generate
text, the output (``max_output_tokens``). A key bound to several roles may use any: the
loosest counts, and one role without caps means no role ceiling at all.
"""

from __future__ import annotations

from collections.abc import Callable

from ..detect.declared import Declarations, Limits, RoleCeiling
from ..limits.settings import LimitRule, LimitSettings
from ..policy.compiled import Policy, Role

__all__ = ["declarations_from", "role_ceilings", "GENERATING"]

#: Operations whose answer is counted in completion tokens.
GENERATING = frozenset({"chat", "completions", "responses"})


def _limits(rule: LimitRule) -> Limits | None:
    if rule.tpm is None and rule.rpm is None and rule.tokens_per_hour is None:
        return None  # e.g. a rule with only a daily cap: no rate declared
    return Limits(tpm=rule.tpm, rpm=rule.rpm, tokens_per_hour=rule.tokens_per_hour)


def declarations_from(limits: LimitSettings) -> Declarations:
    """The key and app rules of ``limits`` (a named rule replaces the unnamed one for it)."""
    keys: dict[str, Limits] = {}
    apps: dict[str, Limits] = {}
    any_key = any_app = None
    for rule in limits.rules:
        declared = _limits(rule)
        if rule.scope == "key":
            if rule.name is None:
                any_key = declared
            elif declared is not None:
                keys[rule.name] = declared
        elif rule.scope == "app":
            if rule.name is None:
                any_app = declared
            elif declared is not None:
                apps[rule.name] = declared
    # a named rule without a rate still replaces the unnamed one (as the limiter does)
    for rule in limits.rules:
        if rule.name is not None and _limits(rule) is None:
            if rule.scope == "key":
                keys[rule.name] = Limits()
            elif rule.scope == "app":
                apps[rule.name] = Limits()
    return Declarations(keys, apps, any_key=any_key, any_app=any_app)


def _request_tokens(role: Role) -> float | None:
    if role.max_prompt_chars is None:
        return None
    generates = bool(role.operations & GENERATING)
    if generates and role.max_output_tokens is None:
        return None
    return float(role.max_prompt_chars + ((role.max_output_tokens or 0) if generates else 0))


def role_ceilings(current: Callable[[], Policy]) -> Callable[[str, str | None], RoleCeiling | None]:
    """A lookup of the role ceiling of a key (by its id, else its app) in the policy in force
    when it is asked (a policy reload applies at once)."""

    def lookup(key_id: str, app: str | None) -> RoleCeiling | None:
        policy = current()
        bindings = policy.by_subject.get("key:" + key_id, ())
        if app is not None:
            bindings = bindings + policy.by_subject.get("app:" + app, ())
        if not bindings:
            return None
        loosest: RoleCeiling | None = None
        for binding in bindings:
            tokens = _request_tokens(binding.role)
            if tokens is None:
                return None
            if loosest is None or tokens > loosest.request_tokens:
                loosest = RoleCeiling(binding.role.name, tokens)
        return loosest

    return lookup
