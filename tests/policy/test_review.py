"""Reviewing a policy: lint warnings, principals and requests written by operators."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from keyguard.errors import BadRequest
from keyguard.policy.compiled import compile_policy
from keyguard.policy.document import parse_document
from keyguard.policy.evaluate import explain
from keyguard.policy.review import explanation_json, lint, parse_principal, parse_request

NOW = datetime(2026, 6, 1, tzinfo=UTC)
APP_ID = "22222222-2222-2222-2222-222222222222"
AGENT_ID = "44444444-4444-4444-4444-444444444444"

POLICY = compile_policy(
    parse_document(
        {
            "apps": {"web": {"entra_client_ids": [APP_ID]}, "idle": {}},
            "agents": {
                "triage": {"entra_client_ids": [AGENT_ID], "parent": "web"},
                "lonely": {"entra_client_ids": ["55555555-5555-5555-5555-555555555555"]},
            },
            "roles": {
                "chat": {"operations": ["chat"], "deployments": ["gpt-4o-mini"]},
                "wide": {"operations": ["chat", "images"], "deployments": ["*"]},
                "unused": {"operations": ["chat"], "deployments": ["x"]},
                "old": {
                    "operations": ["chat"],
                    "deployments": ["nothing-here"],
                    "not_after": "2026-01-01T00:00:00Z",
                },
            },
            "bindings": [
                {"name": "web", "role": "chat", "subjects": ["app:web", f"app:{APP_ID}"]},
                {
                    "name": "agent",
                    "role": "wide",
                    "subjects": ["agent:triage", f"agent:{AGENT_ID}"],
                },
                {"name": "past", "role": "old", "subjects": ["app:legacy"]},
            ],
        }
    )
)


def test_lint() -> None:
    warnings = "\n".join(lint(POLICY, deployments=["gpt-4o-mini", "gpt-4o"], now=NOW))
    assert "roles.unused: no binding uses this role" in warnings
    assert "apps.idle: no binding names app:idle" in warnings
    assert "agents.lonely: no binding names agent:lonely" in warnings
    assert "binding past: already expired" in warnings
    assert "binding past: role old grants no deployment this gateway serves" in warnings
    assert f"app:{APP_ID} is the client id of app web" in warnings
    assert f"agent:{AGENT_ID} is agent triage's client id" in warnings
    assert "agents.triage: role wide grants operations or deployments its parent app web" in (
        warnings
    )
    assert "deployment" not in "\n".join(lint(POLICY, deployments=None, now=NOW)).split("past")[0]


def test_parse_principal() -> None:
    key = parse_principal("key:abcdefghijkl", POLICY, key_app="billing")
    assert (key.kind, key.id, key.app, key.key_id) == (
        "key",
        "key:abcdefghijkl",
        "billing",
        key.key_id,
    )
    agent = parse_principal("agent:triage", POLICY)
    assert agent.app == "web" and agent.parent == "app:web"
    user = parse_principal(f"user:{APP_ID}", POLICY, groups=[AGENT_ID.upper()], app_roles=["R"])
    assert user.groups == (AGENT_ID,) and user.roles == ("R",)
    assert parse_principal("agent:unknown", POLICY).parent is None
    for bad in ("key:abcdefghijkl", "group:" + APP_ID, "nonsense"):
        with pytest.raises(BadRequest):
            parse_principal(bad, POLICY)


def test_parse_request_both_forms() -> None:
    short = parse_request("chat gpt-4o max_tokens=500 stream=true source=10.1.2.3 prompt_chars=9")
    assert short.operation == "chat" and short.deployment == "gpt-4o"
    assert short.max_output_tokens == 500 and short.stream and short.prompt_chars == 9
    assert short.source == ipaddress.ip_address("10.1.2.3")
    as_json = parse_request('{"operation": "models"}')
    assert as_json.deployment is None and not as_json.stream and as_json.prompt_chars == 0
    assert parse_request({"operation": "chat", "stream": "no"}).stream is False


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "teleport x",
        "chat a b",
        "chat x max_tokens=lots",
        "chat x stream=maybe",
        "chat x source=nowhere",
        "chat x colour=blue",
        "{not json",
        "[1]",
        '{"operation": "chat", "max_tokens": true}',
    ],
)
def test_bad_request_specs(spec: str) -> None:
    with pytest.raises(BadRequest):
        parse_request(spec)


def test_explanation_json() -> None:
    principal = parse_principal("app:web", POLICY)
    allowed = explanation_json(explain(POLICY, principal, parse_request("chat gpt-4o-mini"), NOW))
    assert allowed["allowed"] and allowed["binding"] == "web" and allowed["code"] is None
    assert allowed["bindings"] == [
        {
            "binding": "web",
            "role": "chat",
            "via": "app:web",
            "allows": True,
            "code": None,
            "detail": None,
        }
    ]
    denied = explanation_json(explain(POLICY, principal, parse_request("chat gpt-4o"), NOW))
    assert not denied["allowed"] and denied["code"] == "DeploymentNotAllowed"
    assert denied["binding"] == "web" and denied["role"] == "chat"
    nobody = explanation_json(
        explain(POLICY, parse_principal("app:nobody", POLICY), parse_request("chat x"), NOW)
    )
    assert nobody["code"] == "NoRoleAssigned" and nobody["binding"] is None


def test_the_documented_example_policy_is_valid_and_means_what_it_says() -> None:
    text = (Path(__file__).parents[2] / "docs" / "identity.md").read_text()
    found = re.search(
        r"### Example: three apps and an agent\n\n(?:<!--[^\n]*-->\n)?```yaml\n(.*?)```", text, re.S
    )
    assert found is not None
    policy = compile_policy(parse_document(yaml.safe_load(found.group(1))))
    assert (
        lint(policy, deployments=["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"], now=NOW) == []
    )

    def decide(principal: str, request: str) -> str | None:
        who = parse_principal(principal, policy)
        result = explanation_json(explain(policy, who, parse_request(request), NOW))
        return None if result["allowed"] else result["code"]

    assert decide("app:support-web", "chat gpt-4o max_tokens=100 source=10.20.1.5") is None
    assert decide("app:support-web", "chat gpt-4o max_tokens=100 source=10.30.0.1") == (
        "SourceNetworkNotAllowed"
    )
    assert decide("app:billing", "chat gpt-4o-mini max_tokens=100 stream=true") == (
        "StreamingNotAllowed"
    )
    assert decide("app:analytics", "embeddings text-embedding-3-small") is None
    assert decide("agent:triage-agent", "chat gpt-4o max_tokens=100") == "DeploymentNotAllowed"
    assert decide("agent:triage-agent", "chat gpt-4o-mini max_tokens=100 prompt_chars=100") is None
    assert parse_principal("agent:triage-agent", policy).app == "support-web"
