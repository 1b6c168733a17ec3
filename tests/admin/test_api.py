"""The admin API over real sockets: credentials and roles, every action recorded with its
actor, policy management that takes effect on the proxy, and a plane the proxy cannot reach."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from keyguard.emulator import RunningEmulator
from keyguard.events import AdminAction, Event, SecurityEvent
from keyguard.keys.admin_tokens import generate_token
from keyguard.keys.format import generate_key
from keyguard.server import Gateway
from keyguard.wiring.runtime import Runtime
from tests.support.emulators import API_VERSION
from tests.support.gateway import running_gateway, runtime
from tests.support.issuer import LocalIssuer

ADMINS = "aaaaaaaa-0000-0000-0000-000000000001"
VIEWERS = "aaaaaaaa-0000-0000-0000-000000000002"
POLICY = """
roles:
  chat: {operations: [chat], deployments: [gpt-4o-mini]}
bindings:
  - {name: from-file, role: chat, subjects: ["app:billing"]}
"""
CHAT = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


@dataclass
class Admin:
    gateway: Gateway
    http: aiohttp.ClientSession
    events: list[Event] = field(default_factory=list)

    @property
    def runtime(self) -> Runtime:
        return runtime(self.gateway)

    async def call(
        self, method: str, path: str, token: str | None = None, **kw: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        async with self.http.request(
            method, self.gateway.admin_url + path, headers=headers, **kw
        ) as resp:
            assert resp.headers["Cache-Control"] == "no-store"
            return resp.status, await resp.json(content_type=None)

    async def proxy(self, path: str, key: str, json: Any = BODY) -> tuple[int, Any]:
        async with self.http.post(
            self.gateway.proxy_url + path, headers={"api-key": key}, json=json
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def token(self, role: str) -> str:
        from keyguard.cli.support import cli_actor
        from keyguard.wiring.access import open_admin_service

        service = await open_admin_service(self.runtime)
        return (await service.create_admin_token(cli_actor(), name=f"t-{role}", role=role))[1]


@pytest.fixture
async def admin(
    tmp_path: Path, emulator: RunningEmulator, issuer: LocalIssuer
) -> AsyncIterator[Admin]:
    access = {
        "entra": issuer.entra(),
        "policy": {"managed": True},
        "admin": {"entra_groups": {ADMINS: "admin", VIEWERS: "viewer"}},
    }
    async with (
        running_gateway(tmp_path, emulator, access=access, policy=POLICY) as gw,
        aiohttp.ClientSession() as http,
    ):
        harness = Admin(gw, http)
        runtime(gw).events.subscribe(harness.events.append)
        yield harness


def actions(admin: Admin) -> list[tuple[str, str]]:
    return [(e.actor, e.action) for e in admin.events if isinstance(e, AdminAction)]


async def test_health_and_openapi_need_no_credential(admin: Admin) -> None:
    assert (await admin.call("GET", "/healthz"))[0] == 200
    status, spec = await admin.call("GET", "/admin/openapi.json")
    assert status == 200 and spec["openapi"] == "3.1.0"
    described = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    expected = {(e.method, e.path) for e in admin.gateway.access.api.endpoints}  # type: ignore[union-attr]
    assert described == expected and len(expected) >= 18
    assert "RoleSpec" in spec["components"]["schemas"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer kga_not-a-token"},
        {"api-key": "kga_whatever"},
    ],
)
async def test_no_valid_credential_is_401(admin: Admin, headers: dict[str, str]) -> None:
    status, body = await admin.call("GET", "/admin/keys", headers=headers)
    assert status == 401 and set(body["error"]) == {"code", "message"}


async def test_keyguard_keys_do_not_open_the_admin_plane(admin: Admin) -> None:
    _, key = await admin.runtime.keys.create("billing", now=datetime.now(UTC))
    status, body = await admin.call("GET", "/admin/keys", key)
    assert status == 401 and "proxy port" in body["error"]["message"]
    assert any(isinstance(e, SecurityEvent) and e.kind == "admin_auth_failed" for e in admin.events)


async def test_the_admin_plane_is_unreachable_from_the_proxy_port(admin: Admin) -> None:
    token = await admin.token("admin")
    for method, path in [
        ("GET", "/admin/keys"),
        ("GET", "/healthz"),
        ("POST", "/admin/tokens"),
        ("GET", "/admin/openapi.json"),
        ("PUT", "/admin/policy/managed"),
    ]:
        async with admin.http.request(
            method, admin.gateway.proxy_url + path, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status in (401, 404), (method, path, resp.status)
            assert "kga_" not in await resp.text()


async def test_roles(admin: Admin) -> None:
    viewer = await admin.token("viewer")
    operator = await admin.token("operator")
    owner = await admin.token("admin")
    assert (await admin.call("GET", "/admin/whoami", viewer))[1]["role"] == "viewer"
    assert (await admin.call("GET", "/admin/keys", viewer))[0] == 200
    status, body = await admin.call("POST", "/admin/keys", viewer, json={"app": "x"})
    assert status == 403 and body["error"]["code"] == "Forbidden"
    assert (await admin.call("GET", "/admin/tokens", operator))[0] == 403
    status, made = await admin.call("POST", "/admin/keys", operator, json={"app": "billing"})
    assert status == 201 and made["key"].startswith("kgk_")
    assert (await admin.call("GET", "/admin/tokens", owner))[0] == 200
    status, body = await admin.call(
        "POST", "/admin/tokens", owner, json={"name": "bob", "role": "viewer", "expires": "1d"}
    )
    assert status == 201 and body["token"].startswith("kga_") and body["expires_at"]
    assert (await admin.call("POST", f"/admin/tokens/{body['token_id']}/revoke", owner))[0] == 200
    assert (await admin.call("GET", "/admin/whoami", body["token"]))[0] == 401


async def test_keys_through_the_api_take_effect_at_once(admin: Admin) -> None:
    operator = await admin.token("operator")
    status, made = await admin.call(
        "POST", "/admin/keys", operator, json={"app": "billing", "description": "api"}
    )
    assert status == 201
    mini = CHAT.replace("gpt-4o/", "gpt-4o-mini/")
    assert (await admin.proxy(mini, made["key"]))[0] == 200
    assert (await admin.proxy(CHAT, made["key"]))[1]["error"]["code"] == "DeploymentNotAllowed"
    key_id = made["key_id"]
    status, listed = await admin.call("GET", "/admin/keys?app=billing", operator)
    assert [k["key_id"] for k in listed["keys"]] == [key_id] and "key" not in listed["keys"][0]
    assert (await admin.call("POST", f"/admin/keys/{key_id}/suspend", operator))[1]["state"] == (
        "suspended"
    )
    assert (await admin.proxy(mini, made["key"]))[0] == 401
    assert (await admin.call("POST", f"/admin/keys/{key_id}/resume", operator))[0] == 200
    assert (await admin.call("POST", f"/admin/keys/{key_id}/revoke", operator))[0] == 200
    assert (await admin.proxy(mini, made["key"]))[0] == 401  # at once: the cache was told
    assert (await admin.call("GET", "/admin/keys/nope", operator))[0] == 404
    assert (await admin.call("POST", "/admin/keys", operator, json={"app": "../x"}))[0] == 400
    assert (await admin.call("POST", "/admin/keys", operator, data="{"))[0] == 400
    mine = [a for actor, a in actions(admin) if actor.startswith("admin-token:")]
    assert mine[:2] == ["keys.create", "keys.list"] and "keys.revoke" in mine
    assert all(made["key"] not in repr(e) for e in admin.events)


async def test_managed_policy(admin: Admin) -> None:
    owner = await admin.token("admin")
    _, key = await admin.runtime.keys.create("search", now=datetime.now(UTC))
    assert (await admin.proxy(CHAT, key))[1]["error"]["code"] == "NoRoleAssigned"
    role = {"operations": ["chat"], "deployments": ["gpt-4o"], "max_output_tokens": 5}
    assert (await admin.call("PUT", "/admin/policy/roles/small", owner, json=role))[0] == 200
    status, rev = await admin.call(
        "PUT",
        "/admin/policy/bindings/search",
        owner,
        json={"role": "small", "subjects": ["app:search"]},
    )
    assert status == 200 and rev["version"] == 2
    assert (await admin.proxy(CHAT, key))[0] == 200  # in force on this replica at once
    assert (await admin.proxy(CHAT, key, {**BODY, "max_tokens": 6}))[0] == 403
    status, policy = await admin.call("GET", "/admin/policy", owner)
    assert policy["managed_version"] == 2
    assert [b["name"] for b in policy["effective"]["bindings"]] == ["from-file", "search"]
    # Names of the file are the file's; stale versions lose.
    status, body = await admin.call(
        "PUT",
        "/admin/policy/bindings/from-file",
        owner,
        json={"role": "small", "subjects": ["app:x"]},
    )
    assert status == 409 and "policy file" in body["error"]["message"]
    status, _ = await admin.call(
        "PUT", "/admin/policy/managed", owner, json={"document": {}, "expected_version": 1}
    )
    assert status == 409
    status, body = await admin.call(
        "PUT", "/admin/policy/roles/bad", owner, json={"operations": ["nope"], "deployments": []}
    )
    assert status == 400 and body["error"]["code"] == "InvalidPolicy" and body["error"]["problems"]
    assert (await admin.call("DELETE", "/admin/policy/bindings/search", owner))[0] == 200
    assert (await admin.call("DELETE", "/admin/policy/bindings/search", owner))[0] == 404
    assert (await admin.proxy(CHAT, key))[0] == 403
    status, _ = await admin.call(
        "PUT", "/admin/policy/managed", owner, json={"document": {}, "expected_version": 3}
    )
    assert status == 200
    targets = [
        (e.action, e.target, e.after)
        for e in admin.events
        if isinstance(e, AdminAction) and e.action.startswith("policy.") and e.after
    ]
    assert targets[0] == ("policy.role.put", "role:small", {"version": 1})


async def test_check_and_explain(admin: Admin) -> None:
    viewer = await admin.token("viewer")
    status, result = await admin.call(
        "POST",
        "/admin/policy/check",
        viewer,
        json={"document": {"bindings": [{"name": "b", "role": "r", "subjects": ["app:a"]}]}},
    )
    assert status == 200 and not result["valid"] and "not defined" in result["problems"][0]
    status, result = await admin.call(
        "POST",
        "/admin/policy/explain",
        viewer,
        json={"principal": "app:billing", "request": "chat gpt-4o-mini max_tokens=5"},
    )
    assert status == 200 and result["allowed"] and result["binding"] == "from-file"
    status, result = await admin.call(
        "POST",
        "/admin/policy/explain",
        viewer,
        json={"principal": "app:billing", "request": {"operation": "chat", "deployment": "gpt-4o"}},
    )
    assert not result["allowed"] and result["code"] == "DeploymentNotAllowed"
    status, result = await admin.call(
        "POST", "/admin/policy/explain", viewer, json={"principal": "nobody", "request": "chat"}
    )
    assert status == 400


async def test_entra_admin_groups(admin: Admin, issuer: LocalIssuer) -> None:
    oid = "0ad10000-0000-4000-8000-000000000001"  # object ids are GUIDs
    member = issuer.mint(idtyp="user", scp="admin", groups=[ADMINS.upper()], oid=oid.upper())
    status, me = await admin.call("GET", "/admin/whoami", member)
    assert status == 200 and me == {"actor": f"entra:{oid}", "role": "admin"}
    viewer = issuer.mint(groups=[VIEWERS])
    assert (await admin.call("GET", "/admin/tokens", viewer))[0] == 403
    outsider = issuer.mint(groups=["bbbbbbbb-0000-0000-0000-000000000000"])
    assert (await admin.call("GET", "/admin/whoami", outsider))[0] == 403
    expired = issuer.mint(groups=[ADMINS], exp=1)
    assert (await admin.call("GET", "/admin/whoami", expired))[0] == 401


async def test_host_header_is_checked_when_configured(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with (
        running_gateway(tmp_path, emulator, access={"allowed_hosts": ["127.0.0.1"]}) as gw,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(gw.admin_url + "/healthz") as resp:
            assert resp.status == 200
        async with http.get(gw.admin_url + "/healthz", headers={"Host": "evil.test"}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == "HostNotAllowed"


# -- a hostile caller of the admin plane ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/admin/policy/explain", {"principal": "app:x", "request": "chat", "groups": 5},
         "groups"),
        ("POST", "/admin/policy/explain", {"principal": "app:x", "request": "chat",
                                           "groups": "abc"}, "groups"),
        ("POST", "/admin/policy/explain", {"principal": 7, "request": "chat"}, "principal"),
        ("POST", "/admin/policy/explain", {"principal": "app:x", "request": 1.5}, "request"),
        ("POST", "/admin/keys", {"app": 5}, "app"),
        ("POST", "/admin/keys", {"app": "billing", "expires": ["90d"]}, "expires"),
        ("POST", "/admin/keys", {"app": "billing", "surprise": True}, "surprise"),
        ("POST", "/admin/tokens", {"name": "x", "role": "root"}, "role"),
        ("PUT", "/admin/policy/managed", {"document": {}, "expected_version": "1"},
         "expected_version"),
        ("PUT", "/admin/policy/managed", {"document": [], "expected_version": 0}, "document"),
    ],
)  # fmt: skip
async def test_every_wrong_type_is_a_400_naming_the_field(
    admin: Admin, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    token = await admin.token("admin")
    status, answer = await admin.call(method, path, token, json=body)
    assert status == 400, answer
    assert f"'{field}" in answer["error"]["message"]


async def test_a_body_arriving_in_pieces_is_read_whole() -> None:
    """The old read returned what had arrived so far: a valid body in two segments was
    "not valid JSON"."""
    from unittest.mock import Mock

    from aiohttp.streams import StreamReader
    from aiohttp.test_utils import make_mocked_request
    from multidict import CIMultiDict

    from keyguard.admin.bodies import read_json_body as _json_body

    body = b'{"app": "billing", "description": "' + b"x" * 3000 + b'"}'
    stream = StreamReader(Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    request = make_mocked_request(
        "POST",
        "/admin/keys",
        headers=CIMultiDict({"Content-Type": "application/json"}),
        payload=stream,
    )
    stream.feed_data(body[:10])
    reading = asyncio.ensure_future(_json_body(request))
    await asyncio.sleep(0)  # the reader runs until it waits for more of the body
    assert not reading.done()
    stream.feed_data(body[10:])
    stream.feed_eof()
    assert (await reading)["app"] == "billing"


async def test_a_body_over_the_limit_is_refused_without_reading_it_all(admin: Admin) -> None:
    token = await admin.token("admin")
    big = b'{"app": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    status, answer = await admin.call(
        "POST",
        "/admin/keys",
        token,
        data=io.BytesIO(big),
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and "larger" in answer["error"]["message"]


async def test_credentials_pasted_into_the_admin_plane_never_reach_the_audit(
    admin: Admin,
) -> None:
    from keyguard.audit.records import admin_record

    token = await admin.token("admin")
    _, other_token = generate_token()
    key = generate_key().full
    for pasted in (other_token, key):
        status, answer = await admin.call("POST", f"/admin/keys/{pasted}/revoke", token)
        assert status == 404 and pasted not in str(answer)
        assert pasted[4:20] not in str(answer)  # not even the id and the start of the secret
        status, _ = await admin.call("GET", f"/admin/keys/{pasted}", token)
        assert status == 404
    status, _ = await admin.call(
        "POST", "/admin/keys", token, json={"app": "billing", "description": f"see {other_token}"}
    )
    assert status == 201
    records = [str(admin_record(e)) for e in admin.events if isinstance(e, AdminAction)]
    assert records
    for text in records:
        assert other_token not in text and key not in text
        assert other_token[4:20] not in text and key[4:20] not in text
    assert any("[REDACTED:admin_token]" in text for text in records)


@pytest.mark.parametrize("field", ["operation", "deployment", "source"])
async def test_a_deeply_nested_body_is_a_400_not_an_internal_error(
    admin: Admin, field: str
) -> None:
    """orjson reads JSON 1,024 levels deep; printing or re-encoding such a value fails (the
    interpreter's recursion limit, orjson's 254 levels when writing)."""
    token = await admin.token("viewer")
    nested = b'{"a":' * 1000 + b"1" + b"}" * 1000
    body = b'{"principal":"app:x","request":{"operation":"chat","' + field.encode() + b'":'
    status, answer = await admin.call(
        "POST",
        "/admin/policy/explain",
        token,
        data=body + nested + b"}}",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400, answer
    assert "nested" in answer["error"]["message"]
