"""The negative suite: hostile requests, each denied with the right status, in Azure's shape,
and recorded (the access-log line of that request, with its status and reason; for requests
too malformed to be parsed, the proxy's refusal log line). Nothing secret is echoed, and a
caller that has not authenticated learns nothing about the policy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from keyguard.events import SecurityEvent
from keyguard.keys.format import generate_key, parse_key

from .conftest import AGENT_ID, LONELY_ID, NET_APP_ID, POLICY_NAMES, Hostile, Sent, chat

pytestmark = pytest.mark.asyncio(loop_scope="package")

MSG = [{"role": "user", "content": "hi"}]
OK = {"messages": MSG, "max_tokens": 10}
MSG_JSON = b'"messages":' + orjson.dumps(MSG)
V1 = "/openai/v1/chat/completions"


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable[[Hostile], Awaitable[Sent]]
    status: int
    reason: str
    code: str | None = None  # the Azure error code (default: "401" for 401s)


def key(h: Hostile, which: str = "valid") -> dict[str, str]:
    return {"api-key": h.keys[which]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tok(**claims: Any) -> Callable[[Hostile], Awaitable[Sent]]:
    """A chat request carrying a token the issuer mints with ``claims``."""
    return lambda h: h.send(chat(), headers=bearer(h.issuer.mint(**claims)), json=OK)


def raw(make: Callable[[Hostile], str]) -> Callable[[Hostile], Awaitable[Sent]]:
    return lambda h: h.send(chat(), headers=bearer(make(h)), json=OK)


def with_key(
    path: str, body: Any = OK, which: str = "valid", **kw: Any
) -> Callable[[Hostile], Awaitable[Sent]]:
    return lambda h: h.send(path, headers=key(h, which), json=body, **kw)


def past(seconds: int) -> int:
    return int(time.time()) - seconds


OTHER_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"

CASES = [
    # -- Entra tokens ------------------------------------------------------------------------
    Case("jwt-alg-none", raw(lambda h: h.issuer.unsigned()), 401, "token_algorithm"),
    Case(
        "jwt-hs256-with-rsa-public-key",
        raw(lambda h: h.issuer.hs256_with_public_key()),
        401,
        "token_algorithm",
    ),
    Case(
        "jwt-rs384-not-allowed", raw(lambda h: h.issuer.mint(alg="RS384")), 401, "token_algorithm"
    ),
    Case(
        "jwt-signed-by-a-stranger",
        raw(lambda h: h.issuer.signed_by_stranger()),
        401,
        "token_signature",
    ),
    Case("jwt-expired", tok(exp=past(3600), iat=past(7200), nbf=past(7200)), 401, "token_expired"),
    Case("jwt-not-yet-valid", tok(nbf=past(-3600)), 401, "token_not_yet_valid"),
    Case("jwt-issued-in-the-future", tok(iat=past(-3600)), 401, "token_not_yet_valid"),
    Case("jwt-wrong-issuer", tok(iss="https://sts.windows.net/evil-tenant/"), 401, "token_issuer"),
    Case(
        "jwt-wrong-tenant",
        tok(iss=f"https://sts.windows.net/{OTHER_TENANT}/", tid=OTHER_TENANT),
        401,
        "token_issuer",
    ),
    Case("jwt-tid-differs-from-issuer", tok(tid=OTHER_TENANT), 401, "token_issuer"),
    Case(
        "jwt-wrong-audience", tok(aud="https://cognitiveservices.azure.com"), 401, "token_audience"
    ),
    Case("jwt-id-token-audience", tok(aud=AGENT_ID), 401, "token_audience"),
    Case("jwt-no-audience", tok(aud=None), 401, "token_claims"),
    Case("jwt-no-expiry", tok(exp=None), 401, "token_claims"),
    Case("jwt-no-object-id", tok(oid=None), 401, "token_claims"),
    Case("jwt-no-client-id", tok(appid=None), 401, "token_claims"),
    Case(
        "jwt-unknown-kid",
        raw(lambda h: h.issuer.mint(kid="not-published")),
        401,
        "token_unknown_key",
    ),
    Case(
        "jwt-kid-of-a-symmetric-key",
        raw(lambda h: h.issuer.mint(kid="hmac-1")),
        401,
        "token_unknown_key",
    ),
    Case(
        "jwt-rs256-header-on-an-ec-key",
        raw(lambda h: h.issuer.mint(kid="ec-1")),
        401,
        "token_unknown_key",
    ),
    Case(
        "jwt-id-token-type",
        raw(lambda h: h.issuer.mint(headers={"typ": "id+jwt"})),
        401,
        "token_type",
    ),
    Case("jwt-crit-header", raw(lambda h: h.issuer.raw({"crit": ["exp"]})), 401, "token_malformed"),
    Case("jwt-truncated", raw(lambda h: h.issuer.mint()[:-30]), 401, "token_signature"),
    Case(
        "jwt-signature-stripped",
        raw(lambda h: h.issuer.mint().rsplit(".", 1)[0] + "."),
        401,
        "token_signature",
    ),
    Case("jwt-garbage", raw(lambda h: "eyJ" + "A" * 60 + ".eyJ9.c2ln"), 401, "token_malformed"),
    # -- Keyguard keys and other credentials ------------------------------------------------
    Case("key-revoked", with_key(chat(), which="revoked"), 401, "revoked_key"),
    Case("key-expired", with_key(chat(), which="expired"), 401, "expired_key"),
    Case("key-suspended", with_key(chat(), which="suspended"), 401, "suspended_key"),
    Case(
        "key-bad-checksum",
        lambda h: h.send(
            chat(),
            headers={
                "api-key": h.keys["valid"][:-1] + ("A" if h.keys["valid"][-1] != "A" else "B")
            },
            json=OK,
        ),
        401,
        "malformed_key",
    ),
    Case(
        "key-truncated",
        lambda h: h.send(chat(), headers={"api-key": h.keys["valid"][:40]}, json=OK),
        401,
        "malformed_key",
    ),
    Case(
        "key-never-issued",
        lambda h: h.send(chat(), headers={"api-key": generate_key().full}, json=OK),
        401,
        "unknown_key",
    ),
    Case(
        "key-right-id-wrong-secret",
        lambda h: h.send(
            chat(),
            headers={"api-key": generate_key(parse_key(h.keys["valid"]).key_id).full},  # type: ignore[union-attr]
            json=OK,
        ),
        401,
        "unknown_key",
    ),
    Case(
        "credential-in-query-api-key",
        lambda h: h.send(chat() + "&api-key=" + h.keys["valid"], json=OK),
        401,
        "credential_in_query",
    ),
    Case(
        "credential-in-query-subscription-key",
        lambda h: h.send(chat() + "&subscription-key=abc", json=OK),
        401,
        "credential_in_query",
    ),
    Case(
        "credential-in-query-access-token",
        lambda h: h.send(chat() + "&access_token=" + h.issuer.mint(), json=OK),
        401,
        "credential_in_query",
    ),
    Case(
        "conflicting-api-key-and-authorization",
        lambda h: h.send(chat(), headers={**key(h), **bearer(h.keys["office"])}, json=OK),
        401,
        "conflicting_credentials",
    ),
    Case(
        "duplicate-api-key-headers",
        lambda h: h.send(chat(), headers=[("api-key", h.keys["valid"])] * 2, json=OK),
        401,
        "duplicate_credential_header",
    ),
    Case(
        "duplicate-authorization-headers",
        lambda h: h.send(
            chat(),
            headers=[
                ("Authorization", f"Bearer {h.keys['valid']}"),
                ("Authorization", f"Bearer {h.keys['office']}"),
            ],
            json=OK,
        ),
        401,
        "duplicate_credential_header",
    ),
    Case("no-credential", lambda h: h.send(chat(), json=OK), 401, "missing_credential"),
    Case(
        "basic-auth",
        lambda h: h.send(chat(), headers={"Authorization": "Basic YTpi"}, json=OK),
        401,
        "bad_authorization_header",
    ),
    Case(
        "admin-token-on-the-proxy",
        lambda h: h.send(chat(), headers={"api-key": "kga_" + "A" * 50}, json=OK),
        401,
        "unrecognised_credential",
    ),
    Case(
        "openai-key",
        lambda h: h.send(chat(), headers={"api-key": "sk-" + "a" * 48}, json=OK),
        401,
        "unrecognised_credential",
    ),
    Case(
        "raw-azure-identifiable-key",
        lambda h: h.send(chat(), headers={"api-key": h.upstream.keys()[0]}, json=OK),
        401,
        "azure_key_presented",
    ),
    Case(
        "raw-azure-legacy-key-of-ours",
        lambda h: h.send(chat(), headers={"api-key": h.keys["azure-legacy"]}, json=OK),
        401,
        "azure_key_presented",
    ),
    Case(
        "some-32-hex-string",
        lambda h: h.send(chat(), headers={"api-key": "0123456789abcdef" * 2}, json=OK),
        401,
        "azure_key_like",
    ),
    # -- Paths and deployment names --------------------------------------------------------
    Case(
        "deployment-dot-dot",
        with_key(chat("..")),
        404,
        "invalid_deployment_name",
        "DeploymentNotFound",
    ),
    Case(
        "deployment-encoded-slash",
        with_key(chat("gpt-4o%2f..%2fadmin")),
        404,
        "invalid_deployment_name",
        "DeploymentNotFound",
    ),
    Case(
        "deployment-encoded-dots",
        with_key(chat("%2e%2e")),
        404,
        "invalid_deployment_name",
        "DeploymentNotFound",
    ),
    Case(
        "deployment-unicode-hyphen",
        with_key(chat("gpt%E2%80%914o")),
        404,
        "invalid_deployment_name",
        "DeploymentNotFound",
    ),
    Case(
        "deployment-cyrillic-o",
        with_key(chat("gpt-4%D0%BE")),
        404,
        "invalid_deployment_name",
        "DeploymentNotFound",
    ),
    Case(
        "deployment-overlong",
        with_key(chat("g" * 65)),
        404,
        "invalid_deployment_name",
        "DeploymentNotFound",
    ),
    Case(
        "deployment-unknown",
        with_key(chat("gpt-5-secret")),
        404,
        "unknown_deployment",
        "DeploymentNotFound",
    ),
    Case(
        "v1-model-traversal",
        with_key(V1, {"model": "../admin", "messages": MSG}),
        404,
        "invalid_deployment_name",
        "DeploymentNotFound",
    ),
    Case(
        "v1-model-look-alike",
        with_key(V1, {"model": "gpt\u20114o", "messages": MSG}),
        404,
        "invalid_deployment_name",
        "DeploymentNotFound",
    ),
    Case(
        "path-traversal-to-admin",
        with_key("/openai/deployments/gpt-4o/../../../admin/keys?api-version=2024-10-21"),
        404,
        "unknown_route",
    ),
    Case("admin-path-on-proxy", with_key("/admin/tokens"), 404, "unknown_route"),
    # -- One reading of the body: what is checked is what is forwarded ---------------------
    *(
        Case(
            f"body-{name}",
            lambda h, text=text: h.send(  # type: ignore[misc]
                chat(), headers={**key(h), "Content-Type": "application/json"}, data=text
            ),
            400,
            reason,
            "BadRequest",
        )
        for name, text, reason in [
            (
                "model-twice",
                b'{"model":"gpt-4o","model":"gpt-4o-mini",' + MSG_JSON + b"}",
                "duplicate_json_key",
            ),
            (
                "stream-twice",
                b'{"stream":true,"stream":false,' + MSG_JSON + b"}",
                "duplicate_json_key",
            ),
            (
                "max-tokens-twice",
                b'{"max_tokens":100000,"max_tokens":10,' + MSG_JSON + b"}",
                "duplicate_json_key",
            ),
            (
                "nested-content-twice",
                b'{"messages":[{"role":"user","content":"a","content":"b"}],"max_tokens":5}',
                "duplicate_json_key",
            ),
            (
                "Stream-in-another-case",
                b'{"Stream":true,"max_tokens":5,' + MSG_JSON + b"}",
                "confusable_json_key",
            ),
            (  # each string costs every stage that reads texts: a million held the loop
                "a-hundred-thousand-tiny-strings",
                b'{"metadata":' + orjson.dumps(["a"] * 100_000) + b"," + MSG_JSON + b"}",
                "too_many_json_values",
            ),
        ]
    ),  # fmt: skip
    # -- Headers and addresses -------------------------------------------------------------
    Case(
        "host-points-elsewhere",
        lambda h: h.send(chat(), headers={**key(h), "Host": "evil.example.com"}, json=OK),
        400,
        "host_not_allowed",
        "HostNotAllowed",
    ),
    Case(
        "host-with-credentials-elsewhere",
        lambda h: h.send(chat(), headers={**key(h), "Host": "api.openai.azure.com:443"}, json=OK),
        400,
        "host_not_allowed",
        "HostNotAllowed",
    ),
    Case(
        "xff-spoofed-by-the-client",
        lambda h: h.send(
            chat("gpt-4o"), headers={**key(h, "office"), "X-Forwarded-For": "198.51.100.7"}, json=OK
        ),
        403,
        "source_network_not_allowed",
        "SourceNetworkNotAllowed",
    ),
    Case(
        "xff-prefilled-behind-a-trusted-proxy",
        lambda h: h.send(
            chat("gpt-4o"),
            headers={**key(h, "office"), "X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
            json=OK,
            local="127.0.0.2",
        ),
        403,
        "source_network_not_allowed",
        "SourceNetworkNotAllowed",
    ),
    Case(
        "xff-garbage-behind-a-trusted-proxy",
        lambda h: h.send(
            chat("gpt-4o"),
            headers={**key(h, "office"), "X-Forwarded-For": "198.51.100.7, <script>"},
            json=OK,
            local="127.0.0.2",
        ),
        403,
        "source_network_not_allowed",
        "SourceNetworkNotAllowed",
    ),
    Case(
        "xff-entra-app-from-elsewhere",
        lambda h: h.send(
            chat("gpt-4o"),
            headers={**bearer(h.issuer.mint(appid=NET_APP_ID)), "X-Forwarded-For": "198.51.100.7"},
            json=OK,
        ),
        403,
        "source_network_not_allowed",
        "SourceNetworkNotAllowed",
    ),
    # -- The policy --------------------------------------------------------------------------
    Case(
        "deployment-not-granted-to-key",
        with_key(chat("gpt-4o")),
        403,
        "deployment_not_allowed",
        "DeploymentNotAllowed",
    ),
    Case(
        "deployment-not-granted-to-entra-app",
        lambda h: h.send(chat("gpt-4o"), headers=bearer(h.issuer.mint()), json=OK),
        403,
        "deployment_not_allowed",
        "DeploymentNotAllowed",
    ),
    Case(
        "v1-deployment-not-granted",
        with_key(V1, {"model": "gpt-4o", "messages": MSG, "max_tokens": 5}),
        403,
        "deployment_not_allowed",
        "DeploymentNotAllowed",
    ),
    Case(
        "max-tokens-above-cap",
        with_key(chat(), {"messages": MSG, "max_tokens": 101}),
        403,
        "max_tokens_above_role_limit",
        "MaxTokensAboveRoleLimit",
    ),
    Case(
        "max-completion-tokens-above-cap",
        with_key(chat(), {"messages": MSG, "max_tokens": 5, "max_completion_tokens": 4000}),
        403,
        "max_tokens_above_role_limit",
        "MaxTokensAboveRoleLimit",
    ),
    Case(
        "n-times-max-tokens-above-cap",
        with_key(chat(), {"messages": MSG, "max_tokens": 50, "n": 3}),
        403,
        "max_tokens_above_role_limit",
        "MaxTokensAboveRoleLimit",
    ),
    Case(
        "no-max-tokens-under-a-cap",
        with_key(chat(), {"messages": MSG}),
        403,
        "max_tokens_required",
        "MaxTokensRequired",
    ),
    Case(
        "max-tokens-not-a-number",
        with_key(chat(), {"messages": MSG, "max_tokens": "5"}),
        403,
        "max_tokens_required",
        "MaxTokensRequired",
    ),
    Case(
        "streaming-not-allowed",
        with_key(chat(), {**OK, "stream": True}),
        403,
        "streaming_not_allowed",
        "StreamingNotAllowed",
    ),
    Case(
        "streaming-truthy-not-allowed",
        with_key(chat(), {**OK, "stream": 1}),
        403,
        "streaming_not_allowed",
        "StreamingNotAllowed",
    ),
    Case(
        "prompt-above-cap",
        with_key(chat(), {"messages": [{"role": "user", "content": "x" * 2001}], "max_tokens": 5}),
        403,
        "prompt_above_role_limit",
        "PromptAboveRoleLimit",
    ),
    Case(
        "operation-not-granted",
        with_key(
            "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21",
            {"input": "x"},
        ),
        403,
        "operation_not_allowed",
        "OperationNotAllowed",
    ),
    Case(
        "images-not-granted",
        with_key(
            "/openai/deployments/dall-e-3/images/generations?api-version=2024-10-21",
            {"prompt": "x"},
        ),
        403,
        "operation_not_allowed",
        "OperationNotAllowed",
    ),
    Case(
        "model-list-not-granted",
        lambda h: h.send("/openai/v1/models", method="GET", headers=key(h)),
        403,
        "operation_not_allowed",
        "OperationNotAllowed",
    ),
    Case("role-expired", with_key(chat(), which="legacy"), 403, "role_expired", "RoleExpired"),
    Case(
        "key-of-an-app-with-no-role",
        with_key(chat(), which="nobody"),
        403,
        "no_role_assigned",
        "NoRoleAssigned",
    ),
    Case("entra-app-with-no-role", tok(appid=LONELY_ID), 403, "no_role_assigned", "NoRoleAssigned"),
    Case(
        "agent-uses-its-parents-grant",
        tok(appid=AGENT_ID),
        403,
        "operation_not_allowed",
        "OperationNotAllowed",
    ),
    Case(
        "undeclared-agent-claims-a-parent",
        tok(appid=LONELY_ID, xms_par_app_azp=AGENT_ID),
        403,
        "no_role_assigned",
        "NoRoleAssigned",
    ),
]


def access_entry(caplog: pytest.LogCaptureFixture, request_id: str) -> dict[str, Any]:
    for record in caplog.records:
        if record.name == "keyguard.access":
            entry = orjson.loads(record.getMessage())
            if entry["request_id"] == request_id:
                return dict(entry)
    raise AssertionError(f"no access-log record for request {request_id}")


async def test_at_least_sixty_distinct_hostile_requests() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 60


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_hostile(hostile: Hostile, case: Case, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="keyguard.access")
    sent = await case.send(hostile)
    assert sent.status == case.status, sent.text
    assert set(sent.body) == {"error"} and set(sent.body["error"]) == {"code", "message"}
    assert sent.body["error"]["code"] == (case.code or str(case.status))
    entry = access_entry(caplog, sent.request_id)
    assert (entry["status"], entry["reason"]) == (case.status, case.reason)
    for secret in hostile.secrets:
        assert secret not in sent.text
        assert secret not in caplog.text
    if case.status == 401:  # unauthenticated: nothing about the policy
        assert not any(name in sent.text for name in POLICY_NAMES)
        assert "gpt-4o-mini" not in sent.text


async def test_raw_azure_keys_raise_high_severity_events(hostile: Hostile) -> None:
    before = len(hostile.events)
    await hostile.send(chat(), headers={"api-key": hostile.keys["azure-legacy"]}, json=OK)
    await hostile.send(chat(), headers={"api-key": "0123456789abcdef" * 2}, json=OK)
    events = [e for e in hostile.events[before:] if isinstance(e, SecurityEvent)]
    assert len(events) == 1  # the unmanaged 32-hex string is refused without an alarm
    event = events[0]
    assert event.kind == "raw_azure_key_presented" and event.severity == "high"
    assert event.evidence["vault_secret"] == "upstream/legacy-resource"
    assert event.source == "127.0.0.1"
    assert hostile.keys["azure-legacy"] not in repr(event)


async def test_a_flood_of_unknown_kids_costs_no_extra_fetch(
    hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="keyguard.access")
    fetches = hostile.issuer.fetches
    tokens = [hostile.issuer.mint(kid=f"flood-{i}") for i in range(40)]
    sent = await asyncio.gather(*(hostile.send(chat(), headers=bearer(t), json=OK) for t in tokens))
    assert {s.status for s in sent} == {401}
    assert {access_entry(caplog, s.request_id)["reason"] for s in sent} == {"token_unknown_key"}
    assert hostile.issuer.fetches - fetches <= 1


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        ("oversized-header", [("api-key", "k"), ("X-Junk", "x" * 9000)]),
        ("too-many-headers", [(f"X-H{i}", "v") for i in range(200)]),
        ("oversized-token", [("Authorization", "Bearer eyJ" + "A" * 9000 + ".e30.c2ln")]),
    ],
)
async def test_unparseable_requests_are_refused_and_logged(
    hostile: Hostile, caplog: pytest.LogCaptureFixture, name: str, headers: list[tuple[str, str]]
) -> None:
    sent = await hostile.send(chat(), headers=headers, json=OK)
    assert sent.status == 400 and sent.body["error"]["code"] == "BadRequest"
    assert "refused an HTTP request that could not be parsed" in caplog.text


async def test_controls_the_same_requests_done_right_are_allowed(hostile: Hostile) -> None:
    """The suite's denials are the policy's doing: the legitimate variants pass."""
    assert (await hostile.send(chat(), headers=key(hostile), json=OK)).status == 200
    token = hostile.issuer.mint()
    assert (await hostile.send(chat(), headers=bearer(token), json=OK)).status == 200
    es256 = hostile.issuer.mint(alg="ES256")
    assert (await hostile.send(chat(), headers=bearer(es256), json=OK)).status == 200
    office = {**key(hostile, "office"), "X-Forwarded-For": "203.0.113.50, 198.51.100.7"}
    sent = await hostile.send(chat("gpt-4o"), headers=office, json=OK, local="127.0.0.2")
    assert sent.status == 200  # a trusted proxy reports the office address
    agent = hostile.issuer.mint(appid=AGENT_ID)
    embed = "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21"
    assert (await hostile.send(embed, headers=bearer(agent), json={"input": "x"})).status == 200
