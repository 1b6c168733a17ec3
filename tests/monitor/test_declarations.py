"""From ``limits:`` rules and policy roles to what keys declare."""

from __future__ import annotations

import yaml

from keyguard.detect.declared import Declaration, RoleCeiling
from keyguard.limits.settings import LimitSettings
from keyguard.monitor.declarations import declarations_from, role_ceilings
from keyguard.policy.compiled import compile_policy
from keyguard.policy.document import parse_document


def _limits(*rules: dict[str, object]) -> LimitSettings:
    return LimitSettings.model_validate({"rules": list(rules), "teams": {"t": ["billing"]}})


def test_only_key_and_app_rules_declare() -> None:
    decl = declarations_from(
        _limits(
            {"scope": "key", "tpm": 20_000, "rpm": 120},
            {"scope": "key", "name": "KEYAAAAAAAA1", "tokens_per_hour": 90_000},
            {"scope": "key", "name": "KEYBBBBBBBB1", "tokens_per_day": 1_000_000},
            {"scope": "app", "name": "billing", "tpm": 5000},
            {"scope": "team", "name": "t", "tpm": 10},
            {"scope": "deployment", "name": "gpt-4o", "tpm": 10},
            {"scope": "global", "tpm": 10},
        )
    )
    assert decl.of("KEYCCCCCCCC1", "other") == Declaration(20_000, "key limit tpm 20000")
    assert decl.of("KEYAAAAAAAA1", "other") == Declaration(
        90_000, "key limit tokens_per_hour 90000"
    )
    # a named key rule with only a daily cap replaces the unnamed rule for that key, as the
    # limiter does: its app's rule declares
    assert decl.of("KEYBBBBBBBB1", "billing") == Declaration(5000, "app limit tpm 5000")
    assert decl.of("KEYBBBBBBBB1", "other") is None
    assert declarations_from(_limits()).of("KEYAAAAAAAA1", "billing") is None
    unnamed_daily = declarations_from(_limits({"scope": "app", "tokens_per_day": 10}))
    assert unnamed_daily.of("KEYAAAAAAAA1", "billing") is None


POLICY = """
version: 1
roles:
  embed:
    operations: [embeddings]
    deployments: [text-embedding-3-small]
    max_prompt_chars: 4000
  small-chat:
    operations: [chat]
    deployments: [gpt-4o-mini]
    max_prompt_chars: 2000
    max_output_tokens: 500
  open-chat:
    operations: [chat]
    deployments: ["*"]
    max_prompt_chars: 2000
  anything:
    operations: [chat, embeddings]
    deployments: ["*"]
bindings:
  - {name: e, role: embed, subjects: ["app:indexer"]}
  - {name: s, role: small-chat, subjects: ["app:helper", "key:KEYHELPER001"]}
  - {name: s2, role: embed, subjects: ["key:KEYHELPER001"]}
  - {name: o, role: open-chat, subjects: ["app:open"]}
  - {name: a, role: anything, subjects: ["app:mixed"]}
  - {name: m, role: small-chat, subjects: ["app:mixed"]}
"""


def test_role_ceilings_from_the_policy_in_force() -> None:
    current = [compile_policy(parse_document(yaml.safe_load(POLICY)))]
    lookup = role_ceilings(lambda: current[0])
    assert lookup("KEYINDEXER01", "indexer") == RoleCeiling("embed", 4000)  # no output
    assert lookup("KEYHELPER002", "helper") == RoleCeiling("small-chat", 2500)
    # a key bound to several roles may use any: the loosest counts
    assert lookup("KEYHELPER001", "nobody") == RoleCeiling("embed", 4000)
    assert lookup("KEYOPEN00001", "open") is None  # output not capped
    assert lookup("KEYMIXED0001", "mixed") is None  # one role without caps: no ceiling
    assert lookup("KEYSTRANGER1", "stranger") is None
    assert lookup("KEYSTRANGER1", None) is None
    current[0] = compile_policy(parse_document({"version": 1}))  # a reload drops the roles
    assert lookup("KEYINDEXER01", "indexer") is None


def test_role_and_rule_together() -> None:
    current = compile_policy(parse_document(yaml.safe_load(POLICY)))
    decl = declarations_from(_limits({"scope": "key", "rpm": 10}))
    assert decl.of("KEYINDEXER01", "indexer") is None  # before the policy is wired
    decl.role = role_ceilings(lambda: current)
    assert decl.of("KEYINDEXER01", "indexer") == Declaration(
        40_000, "role embed (4000 tokens a request) x key limit rpm 10"
    )
