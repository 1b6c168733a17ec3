"""A role's ``guardrails:`` in the policy document, and the guardrails of the granting roles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from keyguard.core.principal import Principal
from keyguard.policy.compiled import compile_policy
from keyguard.policy.document import PolicyInvalid, parse_document
from keyguard.policy.evaluate import RequestFacts, evaluate

NOW = datetime(2026, 12, 1, tzinfo=UTC)
KEY = Principal("key", "key:KEYAAAAAAAA1", "billing", key_id="KEYAAAAAAAA1")


def _doc(guardrails: object, extra: object = None) -> dict[str, object]:
    roles: dict[str, object] = {
        "r": {"operations": ["chat"], "deployments": ["gpt-4o"], "guardrails": guardrails}
    }
    bindings = [{"name": "b", "role": "r", "subjects": ["app:billing"]}]
    if extra is not None:
        roles["lax"] = {"operations": ["*"], "deployments": ["*"], "guardrails": extra}
        bindings.append({"name": "b2", "role": "lax", "subjects": ["key:KEYAAAAAAAA1"]})
    return {"roles": roles, "bindings": bindings}


@pytest.mark.parametrize(
    ("guardrails", "problem"),
    [
        ({"secret": "allow"}, "roles.r.guardrails.secret"),
        ({"categories": {"Email Address": "log"}}, "is not a category name"),
        ({"restore": "yes please"}, "roles.r.guardrails.restore"),
        ({"secrets": "block"}, "roles.r.guardrails.secrets"),
    ],
)
def test_a_careless_operators_guardrails_are_refused_naming_the_place(
    guardrails: object, problem: str
) -> None:
    with pytest.raises(PolicyInvalid) as info:
        parse_document(_doc(guardrails))
    assert problem in str(info.value)


def test_every_granting_role_is_noted_and_the_strictest_guardrails_apply() -> None:
    policy = compile_policy(
        parse_document(_doc({"personal": "redact", "restore": True}, {"secret": "log"}))
    )
    decision = evaluate(policy, KEY, RequestFacts("chat", "gpt-4o"), NOW)
    assert decision.allowed and decision.roles == ("r", "lax")  # declaration order of bindings
    effective = policy.guardrails(decision.roles)
    assert effective.action("secret", "azure_openai_key") == "block"  # r's default wins
    assert effective.action("personal", "email") == "redact"
    assert not effective.restore  # lax does not restore
    only_lax = evaluate(policy, KEY, RequestFacts("embeddings", "ada"), NOW)
    assert only_lax.roles == ("lax",)
    assert policy.guardrails(only_lax.roles).action("secret", "x") == "log"
    assert policy.guardrails(("gone",)).action("secret", "x") == "block"  # reloaded away
    assert policy.guardrails(decision.roles) is effective  # compiled once per combination


def test_a_bare_off_in_yaml_means_off_not_a_type_error() -> None:
    """YAML 1.1 reads ``attack: off`` as ``false``; the documented spelling must work."""
    spec = yaml.safe_load("{secret: off, personal: log, categories: {email: off}}")
    assert spec["secret"] is False
    policy = compile_policy(parse_document(_doc(spec)))
    effective = policy.guardrails(("r",))
    assert effective.action("secret", "azure_openai_key") == "off"
    assert effective.action("personal", "email") == "off"
    with pytest.raises(PolicyInvalid):
        parse_document(_doc({"secret": True}))  # "on" is no action
