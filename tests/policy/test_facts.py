"""Reading the facts the policy needs from a request, and the authorizer hook."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

import pytest

from keyguard.core.principal import Principal
from keyguard.core.request import PolicyOutcome, RequestContext
from keyguard.errors import PermissionDenied
from keyguard.policy.authorizer import PolicyAuthorizer
from keyguard.policy.compiled import compile_policy
from keyguard.policy.document import parse_document
from keyguard.policy.facts import output_cap, parse_address, prompt_chars, request_facts
from keyguard.proxy.routes import parse_route

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("operation", "payload", "cap"),
    [
        ("chat", {}, None),
        ("chat", {"max_tokens": 10}, 10),
        ("chat", {"max_completion_tokens": 20, "max_tokens": 10}, 20),
        ("chat", {"max_tokens": None}, None),
        ("chat", {"max_tokens": 10, "n": 3}, 30),
        ("chat", {"max_tokens": "10"}, None),
        ("chat", {"max_tokens": True}, None),
        ("chat", {"max_tokens": 0}, None),
        ("chat", {"max_tokens": 10, "max_completion_tokens": -1}, None),
        ("chat", {"max_tokens": 10, "n": "2"}, None),
        ("completions", {"max_tokens": 5, "best_of": 4, "n": 2}, 20),
        ("responses", {"max_output_tokens": 7, "max_tokens": 1000}, 7),
        ("embeddings", {"max_tokens": 10}, None),
    ],
)
def test_output_cap(operation: str, payload: dict[str, Any], cap: int | None) -> None:
    assert output_cap(operation, payload) == cap


def test_prompt_chars_counts_every_string_in_prompt_fields() -> None:
    payload = {
        "messages": [
            {"role": "system", "content": "héllo"},  # 5 characters, 6 bytes
            {"role": "user", "content": [{"type": "text", "text": "abc"}]},
        ],
        "tools": [{"function": {"name": "f"}}],
        "model": "not counted",
        "metadata": {"big": "x" * 1000},
    }
    # "system" 6 + "héllo" 5 + "user" 4 + "text" 4 + "abc" 3 + "f" 1
    assert prompt_chars(payload) == 23
    assert prompt_chars({"prompt": [1, 2, 3], "input": "abcd", "instructions": "ab"}) == 9
    assert prompt_chars({"input": [True, None, 1.5]}) == 0


def test_parse_address() -> None:
    assert parse_address("10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_address(None) is None
    assert parse_address("not-an-ip") is None


def ctx(payload: dict[str, Any] | None, *, remote: str | None = "10.0.0.1") -> RequestContext:
    c = RequestContext("id", 0.0, "POST", remote, None)
    c.route = parse_route(
        "POST", "/openai/deployments/gpt-4o/chat/completions", "api-version=2024-10-21"
    )
    c.deployment = "gpt-4o"
    c.payload = payload
    c.principal = Principal("key", "key:abcdefghijkl", "billing", "abcdefghijkl")
    return c


def test_request_facts() -> None:
    facts = request_facts(
        ctx({"stream": 1, "max_tokens": 5, "messages": [{"content": "hi"}]}),
        measure_prompt=True,
        parse_source=True,
    )
    assert facts.operation == "chat" and facts.deployment == "gpt-4o"
    assert facts.stream and facts.max_output_tokens == 5 and facts.prompt_chars == 2
    assert facts.source == ipaddress.ip_address("10.0.0.1")
    lazy = request_facts(ctx({"stream": False}), measure_prompt=False, parse_source=False)
    assert not lazy.stream and lazy.prompt_chars is None and lazy.source is None
    multipart = request_facts(ctx(None), measure_prompt=True, parse_source=False)
    assert multipart.prompt_chars == 0


def test_authorizer_allows_and_notes_the_binding_or_denies_in_azure_terms() -> None:
    policy = compile_policy(
        parse_document(
            {
                "roles": {
                    "r": {
                        "operations": ["chat"],
                        "deployments": ["gpt-4o"],
                        "max_output_tokens": 10,
                        "max_prompt_chars": 100,
                        "source_networks": ["10.0.0.0/8"],
                    }
                },
                "bindings": [{"name": "b", "role": "r", "subjects": ["app:billing"]}],
            }
        )
    )
    authorizer = PolicyAuthorizer(lambda: policy)
    ok = ctx({"max_tokens": 10, "messages": [{"content": "hi"}]})
    authorizer.authorize(ok, NOW)
    assert ok.policy == PolicyOutcome("b", "r", roles=("r",))
    denied = ctx({"max_tokens": 11})
    with pytest.raises(PermissionDenied) as info:
        authorizer.authorize(denied, NOW)
    assert info.value.status == 403 and info.value.code == "MaxTokensAboveRoleLimit"
    assert info.value.reason == "max_tokens_above_role_limit"
    assert denied.policy is not None and denied.policy.binding == "b"
    assert "role" not in info.value.message.split("'s role")[0]
    elsewhere = ctx({"max_tokens": 1}, remote="192.0.2.1")
    with pytest.raises(PermissionDenied) as info:
        authorizer.authorize(elsewhere, NOW)
    assert info.value.code == "SourceNetworkNotAllowed"
