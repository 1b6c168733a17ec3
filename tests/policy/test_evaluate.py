"""The evaluator, case by case: default deny, each constraint, the most specific denial."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyguard.core.principal import Principal
from keyguard.policy.compiled import EMPTY, Policy, compile_policy
from keyguard.policy.document import parse_document
from keyguard.policy.evaluate import RequestFacts, evaluate, explain, subjects_of

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEY = Principal("key", "key:abcdefghijkl", "billing", "abcdefghijkl")
APP = Principal("app", "app:billing", "billing", tenant="t")
AGENT = Principal("agent", "agent:triage", "support", parent="app:support")
GROUP = "11111111-1111-1111-1111-111111111111"
USER = Principal("user", "user:u", "web", groups=(GROUP,), roles=("Keyguard.Chat",))


def policy(roles: dict[str, Any], bindings: list[dict[str, Any]], **more: Any) -> Policy:
    return compile_policy(parse_document({"roles": roles, "bindings": bindings, **more}))


CHAT = {"operations": ["chat"], "deployments": ["gpt-4o-mini"]}


def facts(**kw: Any) -> RequestFacts:
    base: dict[str, Any] = {
        "operation": "chat",
        "deployment": "gpt-4o-mini",
        "max_output_tokens": 10,
    }
    base.update(kw)
    return RequestFacts(**base)


def test_empty_policy_denies_everything() -> None:
    decision = evaluate(EMPTY, KEY, facts(), NOW)
    assert not decision.allowed
    assert decision.denial is not None and decision.denial.code == "NoRoleAssigned"
    assert "key:abcdefghijkl" in decision.denial.message


def test_key_reached_by_its_id_or_its_app() -> None:
    by_app = policy({"chat": CHAT}, [{"name": "b", "role": "chat", "subjects": ["app:billing"]}])
    by_key = policy(
        {"chat": CHAT}, [{"name": "k", "role": "chat", "subjects": ["key:abcdefghijkl"]}]
    )
    assert evaluate(by_app, KEY, facts(), NOW).binding == "b"
    assert evaluate(by_key, KEY, facts(), NOW).binding == "k"
    assert evaluate(by_app, APP, facts(), NOW).allowed
    assert not evaluate(by_key, APP, facts(), NOW).allowed


def test_agents_do_not_inherit_their_parent_apps_bindings() -> None:
    p = policy({"chat": CHAT}, [{"name": "b", "role": "chat", "subjects": ["app:support"]}])
    assert subjects_of(AGENT) == ("agent:triage",)
    assert not evaluate(p, AGENT, facts(), NOW).allowed


def test_groups_and_app_roles_are_subjects() -> None:
    by_group = policy(
        {"chat": CHAT}, [{"name": "g", "role": "chat", "subjects": [f"group:{GROUP}"]}]
    )
    by_role = policy(
        {"chat": CHAT}, [{"name": "r", "role": "chat", "subjects": ["approle:Keyguard.Chat"]}]
    )
    assert evaluate(by_group, USER, facts(), NOW).allowed
    assert evaluate(by_role, USER, facts(), NOW).allowed


@pytest.mark.parametrize(
    ("role", "request_facts", "code"),
    [
        ({"operations": ["embeddings"]}, {}, "OperationNotAllowed"),
        ({"deployments": ["gpt-4o"]}, {}, "DeploymentNotAllowed"),
        ({"source_networks": ["10.0.0.0/8"]}, {"source": "192.0.2.1"}, "SourceNetworkNotAllowed"),
        ({"source_networks": ["10.0.0.0/8"]}, {"source": None}, "SourceNetworkNotAllowed"),
        ({"streaming": False}, {"stream": True}, "StreamingNotAllowed"),
        ({"max_output_tokens": 5}, {}, "MaxTokensAboveRoleLimit"),
        ({"max_output_tokens": 5}, {"max_output_tokens": None}, "MaxTokensRequired"),
        ({"max_prompt_chars": 5}, {"prompt_chars": 6}, "PromptAboveRoleLimit"),
        ({"max_prompt_chars": 5}, {"prompt_chars": None}, "PromptAboveRoleLimit"),
        ({"not_before": "2026-07-01T00:00:00Z"}, {}, "RoleNotYetValid"),
        ({"not_after": "2026-06-01T12:00:00Z"}, {}, "RoleExpired"),
    ],
)
def test_each_constraint(role: dict[str, Any], request_facts: dict[str, Any], code: str) -> None:
    if "source" in request_facts and request_facts["source"] is not None:
        request_facts["source"] = ipaddress.ip_address(request_facts["source"])
    p = policy({"r": {**CHAT, **role}}, [{"name": "b", "role": "r", "subjects": ["app:billing"]}])
    decision = evaluate(p, APP, facts(**request_facts), NOW)
    assert not decision.allowed and decision.denial is not None
    assert decision.denial.code == code
    assert decision.denial.binding == "b" and decision.denial.role == "r"
    assert "app:billing" in decision.denial.message
    assert "role r" not in decision.denial.message  # no policy internals for the caller


def test_limits_at_their_edges_allow() -> None:
    role = {
        **CHAT,
        "max_output_tokens": 10,
        "max_prompt_chars": 100,
        "source_networks": ["10.0.0.0/8", "2001:db8::/32"],
        "not_before": "2026-06-01T12:00:00Z",
        "not_after": "2026-06-01T12:00:01Z",
    }
    p = policy({"r": role}, [{"name": "b", "role": "r", "subjects": ["app:billing"]}])
    for source in ("10.255.255.255", "2001:db8::1"):
        f = facts(prompt_chars=100, source=ipaddress.ip_address(source))
        assert evaluate(p, APP, f, NOW).allowed


def test_output_cap_does_not_apply_to_embeddings() -> None:
    role = {"operations": ["embeddings"], "deployments": ["e*"], "max_output_tokens": 1}
    p = policy({"r": role}, [{"name": "b", "role": "r", "subjects": ["app:billing"]}])
    f = RequestFacts("embeddings", "emb-small", max_output_tokens=None)
    assert evaluate(p, APP, f, NOW).allowed


def test_binding_window() -> None:
    p = policy(
        {"chat": CHAT},
        [
            {
                "name": "temp",
                "role": "chat",
                "subjects": ["app:billing"],
                "not_after": (NOW + timedelta(hours=1)).isoformat(),
            }
        ],
    )
    assert evaluate(p, APP, facts(), NOW).allowed
    later = evaluate(p, APP, facts(), NOW + timedelta(hours=1))
    assert later.denial is not None and later.denial.code == "RoleExpired"


def test_globs_aliases_and_wildcards() -> None:
    p = policy(
        {
            "r": {"operations": ["audio", "chat"], "deployments": ["gpt-4o-*", "whisper"]},
            "all": {"operations": ["*"], "deployments": ["*"]},
        },
        [
            {"name": "b", "role": "r", "subjects": ["app:billing"]},
            {"name": "everything", "role": "all", "subjects": ["app:admin-tool"]},
        ],
    )
    assert evaluate(p, APP, facts(deployment="gpt-4o-mini"), NOW).allowed
    assert not evaluate(p, APP, facts(deployment="gpt-4o"), NOW).allowed
    assert evaluate(p, APP, RequestFacts("transcriptions", "whisper"), NOW).allowed
    assert not evaluate(p, APP, RequestFacts("embeddings", "whisper"), NOW).allowed
    admin = Principal("app", "app:admin-tool", "admin-tool")
    assert evaluate(p, admin, RequestFacts("images", "dall-e-3"), NOW).allowed


def test_the_most_specific_denial_wins_and_the_first_allowing_binding_is_named() -> None:
    p = policy(
        {
            "embed": {"operations": ["embeddings"], "deployments": ["*"]},
            "small": {**CHAT, "max_output_tokens": 5},
            "big": {**CHAT, "max_output_tokens": 500},
        },
        [
            {"name": "e", "role": "embed", "subjects": ["app:billing"]},
            {"name": "s", "role": "small", "subjects": ["app:billing"]},
            {"name": "b1", "role": "big", "subjects": ["key:abcdefghijkl"]},
            {"name": "b2", "role": "big", "subjects": ["app:billing"]},
        ],
    )
    denied = evaluate(p, APP, facts(max_output_tokens=600), NOW)
    assert denied.denial is not None and denied.denial.code == "MaxTokensAboveRoleLimit"
    assert "500" in denied.denial.message  # the limit of the role that got furthest
    assert evaluate(p, KEY, facts(max_output_tokens=100), NOW).binding == "b1"
    assert evaluate(p, APP, facts(max_output_tokens=100), NOW).binding == "b2"


def test_models_listing_needs_only_the_operation() -> None:
    p = policy(
        {"m": {"operations": ["models"], "deployments": ["none"]}},
        [{"name": "b", "role": "m", "subjects": ["app:billing"]}],
    )
    assert evaluate(p, APP, RequestFacts("models", None), NOW).allowed


def test_explain_lists_every_binding_that_names_the_principal() -> None:
    p = policy(
        {"chat": CHAT, "embed": {"operations": ["embeddings"], "deployments": ["*"]}},
        [
            {"name": "e", "role": "embed", "subjects": ["app:billing"]},
            {"name": "c", "role": "chat", "subjects": ["key:abcdefghijkl"]},
            {"name": "other", "role": "chat", "subjects": ["app:someone-else"]},
        ],
    )
    explanation = explain(p, KEY, facts(), NOW)
    assert explanation.decision.allowed and explanation.decision.binding == "c"
    assert [(t.binding, t.subject, t.denial is None) for t in explanation.traces] == [
        ("e", "app:billing", False),
        ("c", "key:abcdefghijkl", True),
    ]
    assert explanation.traces[0].denial is not None
    assert "operation chat not in" in explanation.traces[0].denial.detail
