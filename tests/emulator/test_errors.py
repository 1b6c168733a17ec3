"""Azure's exact error bodies and statuses, and the headers on every data-plane answer."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import openai
import pytest

from keyguard.emulator import EmulatorConfig, RunningEmulator
from tests.support.emulators import API_VERSION, CHAT_PATH

from .conftest import MESSAGES

INVALID_KEY = {
    "error": {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint. Make "
        "sure to provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
    }
}
NOT_FOUND = {"error": {"code": "404", "message": "Resource not found"}}


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    *,
    headers: dict[str, str],
    json: Any = None,
    data: Any = None,
) -> tuple[int, Any, Any]:
    async with http.post(url, json=json, data=data, headers=headers) as response:
        body = await response.json(content_type=None)
        return response.status, body, response.headers


async def test_wrong_key_gets_azure_401(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    status, body, headers = await _post(
        http, emulator.url + CHAT_PATH, headers={"api-key": "0" * 32}, json={"messages": MESSAGES}
    )
    assert (status, body) == (401, INVALID_KEY)
    uuid.UUID(headers["apim-request-id"])


async def test_wrong_key_through_the_sdk(emulator: RunningEmulator) -> None:
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=emulator.url, api_key="wrong", api_version=API_VERSION, max_retries=0
    )
    async with client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.body == INVALID_KEY["error"]


async def test_missing_key(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    status, body, _ = await _post(http, emulator.url + CHAT_PATH, headers={}, json={})
    assert status == 401 and "missing subscription key" in body["error"]["message"]


async def test_key_and_different_bearer_is_400(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    key = emulator.keys()[0]
    status, body, _ = await _post(
        http,
        emulator.url + CHAT_PATH,
        headers={"api-key": key, "Authorization": "Bearer something-else"},
        json={"messages": MESSAGES},
    )
    assert status == 400
    assert body == {
        "error": {
            "code": "BadRequest",
            "message": "Either API-KEY or Authorization header must be provided but not both",
        }
    }
    # old openai SDKs send the key twice (api-key and Bearer): that is accepted
    status, _, _ = await _post(
        http,
        emulator.url + CHAT_PATH,
        headers={"api-key": key, "Authorization": f"Bearer {key}"},
        json={"messages": MESSAGES},
    )
    assert status == 200


async def test_bad_bearer_token(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    status, body, _ = await _post(
        http,
        emulator.url + CHAT_PATH,
        headers={"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln"},
        json={"messages": MESSAGES},
    )
    assert status == 401
    assert body["error"]["message"].startswith("Unauthorized. Access token is missing")


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(disable_local_auth=True)])
async def test_disable_local_auth(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    status, body, _ = await _post(
        http,
        emulator.url + CHAT_PATH,
        headers={"api-key": emulator.keys()[0]},
        json={"messages": MESSAGES},
    )
    assert status == 403
    assert body == {
        "error": {
            "code": "AuthenticationTypeDisabled",
            "message": "Key based authentication is disabled for this resource.",
        }
    }


@pytest.mark.parametrize(
    "path",
    [
        "/openai/deployments/gpt-4o/chat/completions",  # no api-version
        "/openai/deployments/gpt-4o/chat/completions?api-version=garbage",
        "/openai/deployments/gpt-4o/unknown/op?api-version=" + API_VERSION,
        "/openai/nothing-here?api-version=" + API_VERSION,
        "/",
    ],
)
async def test_unknown_routes_and_api_versions(
    emulator: RunningEmulator, http: aiohttp.ClientSession, path: str
) -> None:
    status, body, _ = await _post(
        http, emulator.url + path, headers={"api-key": emulator.keys()[0]}, json={}
    )
    assert (status, body) == (404, NOT_FOUND)


async def test_get_on_a_post_route_is_404(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(emulator.url + CHAT_PATH) as response:
        assert response.status == 404
        assert await response.json() == NOT_FOUND


async def test_unknown_deployment(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    path = "/openai/deployments/gpt-5/chat/completions?api-version=" + API_VERSION
    status, body, _ = await _post(
        http, emulator.url + path, headers={"api-key": emulator.keys()[0]}, json={"messages": []}
    )
    assert status == 404
    assert body["error"]["code"] == "DeploymentNotFound"
    assert body["error"]["message"].startswith("The API deployment for this resource does not")
    v1_status, v1_body, _ = await _post(
        http,
        emulator.url + "/openai/v1/chat/completions",
        headers={"api-key": emulator.keys()[0]},
        json={"model": "nope", "messages": MESSAGES},
    )
    assert (v1_status, v1_body) == (status, body)


async def test_operation_not_supported(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    path = "/openai/deployments/text-embedding-3-small/chat/completions?api-version=" + API_VERSION
    status, body, _ = await _post(
        http,
        emulator.url + path,
        headers={"api-key": emulator.keys()[0]},
        json={"messages": MESSAGES},
    )
    assert status == 400
    assert body["error"]["code"] == "OperationNotSupported"
    assert "text-embedding-3-small" in body["error"]["message"]


async def test_responses_needs_a_recent_api_version(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await _post(
        http,
        emulator.url + "/openai/responses?api-version=2024-10-21",
        headers={"api-key": emulator.keys()[0]},
        json={"model": "gpt-4o", "input": "hi"},
    )
    assert (status, body) == (
        400,
        {"error": {"code": "BadRequest", "message": "API version not supported"}},
    )


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(api_versions=frozenset({"2024-10-21"}))]
)
async def test_api_version_allow_list(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    path = "/openai/deployments/gpt-4o/chat/completions?api-version=2023-05-15"
    status, body, _ = await _post(
        http, emulator.url + path, headers={"api-key": emulator.keys()[0]}, json={}
    )
    assert (status, body) == (404, NOT_FOUND)


async def test_malformed_json_wrong_type_and_content_type(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    headers = {"api-key": emulator.keys()[0], "Content-Type": "application/json"}
    status, body, _ = await _post(http, emulator.url + CHAT_PATH, headers=headers, data=b"{nope")
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("We could not parse the JSON body")
    status, body, _ = await _post(http, emulator.url + CHAT_PATH, headers=headers, data=b"[1, 2]")
    assert status == 400
    headers["Content-Type"] = "text/plain"
    status, body, _ = await _post(http, emulator.url + CHAT_PATH, headers=headers, data=b"{}")
    assert status == 415
    assert body["error"]["message"].startswith("Invalid Content-Type header (text/plain)")


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(max_body_bytes=2048)])
async def test_oversized_body_is_413(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    big = {"messages": [{"role": "user", "content": "x" * 5000}]}
    status, body, _ = await _post(
        http, emulator.url + CHAT_PATH, headers={"api-key": emulator.keys()[0]}, json=big
    )
    assert status == 413
    assert body["error"]["code"] == "RequestEntityTooLarge"


async def test_common_headers_on_success_and_stream(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    headers = {"api-key": emulator.keys()[0], "x-ms-client-request-id": "abc-123"}
    for stream in (False, True):
        async with http.post(
            emulator.url + CHAT_PATH,
            json={"messages": MESSAGES, "stream": stream},
            headers=headers,
        ) as response:
            await response.read()
            got = response.headers
        assert response.status == 200
        uuid.UUID(got["apim-request-id"])
        uuid.UUID(got["x-request-id"])
        assert got["apim-request-id"] != got["x-request-id"]
        assert got["x-ms-region"] == "East US"
        assert got["x-ms-client-request-id"] == "abc-123"
        assert got["x-content-type-options"] == "nosniff"
        assert got["azureml-model-session"]
        assert got["x-ratelimit-remaining-tokens"] == "-1"  # unlimited deployment
        assert got["x-ratelimit-remaining-requests"] == "-1"
