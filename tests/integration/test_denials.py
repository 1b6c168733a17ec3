"""What the gateway refuses, over real sockets: each answer in Azure's shape, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import openai
import pytest

from keyguard.keys.format import generate_key
from tests.support.emulators import API_VERSION
from tests.support.servers import lacks_on_granian

from .harness import GatewayHarness

CHAT = "/openai/deployments/gpt-4o/chat/completions?api-version=" + API_VERSION
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


async def post(
    gateway: GatewayHarness, path: str, *, headers: dict[str, str], **kwargs: Any
) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url + path, headers=headers, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None), resp.headers


def assert_azure_error(body: dict[str, Any]) -> dict[str, Any]:
    assert set(body) == {"error"}
    err: dict[str, Any] = body["error"]
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and len(err["message"]) > 10
    return err


async def test_revoked_key(gateway: GatewayHarness) -> None:
    key_id, key = await gateway.new_key()
    await gateway.revoke(key_id)
    async with gateway.azure(key) as client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model="gpt-4o", messages=BODY["messages"])  # type: ignore[call-overload]
    assert info.value.status_code == 401
    assert "revoked" in info.value.message


async def test_expired_key(gateway: GatewayHarness) -> None:
    _, key = await gateway.new_key(
        expires_in=timedelta(days=1), now=datetime.now(UTC) - timedelta(days=2)
    )
    status, body, _ = await post(gateway, CHAT, headers={"api-key": key}, json=BODY)
    assert status == 401 and "expired" in assert_azure_error(body)["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"api-key": "kgk_tooshort"},
        {"api-key": "sk-not-a-keyguard-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["no-key", "malformed", "foreign", "basic-auth"],
)
async def test_missing_or_malformed_credentials(
    gateway: GatewayHarness, headers: dict[str, str]
) -> None:
    status, body, _ = await post(gateway, CHAT, headers=headers, json=BODY)
    assert status == 401
    assert assert_azure_error(body)["code"] == "401"


async def test_wrong_checksum_and_unknown_key(gateway: GatewayHarness, app_key: str) -> None:
    bad_checksum = app_key[:-1] + ("0" if app_key[-1] != "0" else "1")
    unknown = generate_key().full  # valid checksum, never issued here
    for key in (bad_checksum, unknown):
        status, body, _ = await post(gateway, CHAT, headers={"api-key": key}, json=BODY)
        assert status == 401
        assert key not in str(body)


async def test_right_id_wrong_secret_is_refused(gateway: GatewayHarness) -> None:
    key_id, _ = await gateway.new_key()
    forged = generate_key(key_id).full
    status, body, _ = await post(gateway, CHAT, headers={"api-key": forged}, json=BODY)
    assert status == 401 and "revoked" not in body["error"]["message"]


async def test_two_disagreeing_credentials(gateway: GatewayHarness, app_key: str) -> None:
    _, other = await gateway.new_key()
    headers = {"api-key": app_key, "Authorization": f"Bearer {other}"}
    status, body, _ = await post(gateway, CHAT, headers=headers, json=BODY)
    assert status == 401 and "different" in body["error"]["message"]
    same = {"api-key": app_key, "Authorization": f"Bearer {app_key}"}
    status, _, _ = await post(gateway, CHAT, headers=same, json=BODY)
    assert status == 200


async def test_credentials_in_query_are_refused(gateway: GatewayHarness, app_key: str) -> None:
    status, body, _ = await post(
        gateway, CHAT + "&api-key=" + app_key, headers={"api-key": app_key}, json=BODY
    )
    assert status == 401 and app_key not in str(body)


async def test_azure_key_presented_is_refused(
    gateway: GatewayHarness, caplog: pytest.LogCaptureFixture
) -> None:
    azure_key = gateway.emulator.keys()[0]
    with caplog.at_level("WARNING", logger="keyguard.security"):
        status, body, _ = await post(gateway, CHAT, headers={"api-key": azure_key}, json=BODY)
    assert status == 401 and "Azure OpenAI key" in body["error"]["message"]
    assert any("raw_azure_key_presented" in r.getMessage() for r in caplog.records)
    assert all(azure_key not in r.getMessage() for r in caplog.records)


async def test_unknown_deployment_and_route(gateway: GatewayHarness, app_key: str) -> None:
    status, body, _ = await post(
        gateway,
        "/openai/deployments/nope/chat/completions?api-version=" + API_VERSION,
        headers={"api-key": app_key},
        json=BODY,
    )
    assert status == 404 and body["error"]["code"] == "DeploymentNotFound"
    status, body, _ = await post(gateway, "/openai/files", headers={"api-key": app_key}, json={})
    assert status == 404 and body == {"error": {"code": "404", "message": "Resource not found"}}
    async with gateway.v1(app_key) as v1:
        with pytest.raises(openai.NotFoundError):
            await v1.chat.completions.create(model="nope", messages=BODY["messages"])  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "path",
    [
        "/openai/deployments/%2e%2e/chat/completions",
        "/openai/deployments/gpt-4o%2fchat/completions",
        "/openai/deployments/gpt%E2%80%914o/chat/completions",
        "/openai/deployments/" + "a" * 300 + "/chat/completions",
    ],
)
async def test_hostile_deployment_names(gateway: GatewayHarness, app_key: str, path: str) -> None:
    status, body, _ = await post(
        gateway, path + "?api-version=" + API_VERSION, headers={"api-key": app_key}, json=BODY
    )
    assert status == 404
    assert_azure_error(body)


async def test_bad_api_version(gateway: GatewayHarness, app_key: str) -> None:
    for query in ("", "?api-version=yesterday"):
        status, body, _ = await post(
            gateway,
            "/openai/deployments/gpt-4o/chat/completions" + query,
            headers={"api-key": app_key},
            json=BODY,
        )
        assert status == 400 and "api-version" in assert_azure_error(body)["message"]


async def test_malformed_and_mistyped_bodies(gateway: GatewayHarness, app_key: str) -> None:
    headers = {"api-key": app_key, "Content-Type": "application/json"}
    for data in (b"{not json", b"[1, 2]", b"\xff\xfe", b""):
        status, body, _ = await post(gateway, CHAT, headers=headers, data=data)
        assert status == 400, data
        assert_azure_error(body)
    status, body, _ = await post(
        gateway, CHAT, headers={"api-key": app_key, "Content-Type": "text/plain"}, data=b"{}"
    )
    assert status == 415
    status, body, _ = await post(
        gateway, "/openai/v1/chat/completions", headers=headers, data=b'{"model": 42}'
    )
    assert status == 400 and "model" in body["error"]["message"]


@pytest.mark.parametrize("gateway_options", [{"max_body_bytes": 2048}])
async def test_oversized_body(gateway: GatewayHarness, app_key: str) -> None:
    big = {"messages": [{"role": "user", "content": "x" * 4096}]}
    status, body, _ = await post(gateway, CHAT, headers={"api-key": app_key}, json=big)
    assert status == 413 and assert_azure_error(body)["code"] == "RequestEntityTooLarge"

    async def chunks() -> Any:  # no Content-Length: the limit holds while reading
        for _ in range(8):
            yield b"x" * 1024

    status, body, _ = await post(
        gateway,
        CHAT,
        headers={"api-key": app_key, "Content-Type": "application/json"},
        data=chunks(),
    )
    assert status == 413
    async with gateway.azure(app_key) as client:  # the gateway still serves afterwards
        reply = await client.chat.completions.create(model="gpt-4o", messages=BODY["messages"])  # type: ignore[call-overload]
    assert reply.choices


@lacks_on_granian(
    "Granian answers a request it cannot parse itself: 400 or 431 with an empty body, "
    "not Azure's JSON shape"
)
async def test_oversized_and_malformed_http_gets_azure_json(
    gateway: GatewayHarness, app_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    async def raw(request: bytes) -> bytes:
        host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data

    huge = b"api-key: " + app_key.encode() + b"A" * 9000
    for request in (
        b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\n" + huge + b"\r\n\r\n",
        b"POST "
        + CHAT.encode()
        + b" HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        + b"\r\n",
        b"NOT A REQUEST\r\n\r\n",
    ):
        with caplog.at_level("DEBUG"):
            answer = await raw(request)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"400", head
        assert b"application/json" in head
        assert b'"error"' in body and b"malformed" in body
    assert app_key not in caplog.text


async def test_suspended_key_is_refused_until_resumed(gateway: GatewayHarness) -> None:
    key_id, key = await gateway.new_key()
    keys = gateway.runtime.keys
    await keys.suspend(key_id, now=datetime.now(UTC))
    assert gateway.gateway.authenticator is not None
    gateway.gateway.authenticator.invalidate(key_id)
    status, body, _ = await post(gateway, CHAT, headers={"api-key": key}, json=BODY)
    assert status == 401 and "suspended" in body["error"]["message"]
    await keys.resume(key_id, now=datetime.now(UTC))
    gateway.gateway.authenticator.invalidate(key_id)
    status, _, _ = await post(gateway, CHAT, headers={"api-key": key}, json=BODY)
    assert status == 200
