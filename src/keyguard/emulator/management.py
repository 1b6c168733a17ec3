"""The Azure Resource Manager surface of the emulated account (``azure-mgmt-cognitiveservices``).

Under ``/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/
accounts/{account}`` (every call needs ``?api-version=`` and a bearer token for
``https://management.azure.com``):

* ``GET``           the account resource (``properties.endpoint`` is this emulator);
* ``PATCH``         ``{"properties": {"disableLocalAuth": true}}`` turns key auth off/on;
* ``POST listKeys`` ``{"key1", "key2"}``;
* ``POST regenerateKey`` ``{"keyName": "Key1"|"Key2"}`` → the new pair; the old key is
  refused by the data plane from the very next request, as in Azure;
* ``GET deployments`` and ``GET deployments/{name}``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
from aiohttp import web

from keyguard.emulator import errors
from keyguard.emulator.appkeys import STATE_KEY
from keyguard.emulator.auth import authenticate_management
from keyguard.emulator.state import EmulatorState, KeyName

__all__ = ["ACCOUNT_PATH", "routes"]

ACCOUNT_PATH = (
    "/subscriptions/{subscription}/resourceGroups/{group}"
    "/providers/Microsoft.CognitiveServices/accounts/{account}"
)
_MODEL_VERSION = re.compile(r"^(?P<name>.+)-(?P<version>\d{4}-\d{2}-\d{2})$")


def _json(status: int, body: dict[str, Any]) -> web.Response:
    response = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
    request_id = str(uuid.uuid4())
    response.headers["x-ms-request-id"] = request_id
    response.headers["x-ms-correlation-request-id"] = request_id
    return response


def _check(request: web.Request) -> EmulatorState:
    """Authenticate, then check api-version and that the path names this account."""
    state = request.app[STATE_KEY]
    config = state.config
    authenticate_management(
        request.headers.get("Authorization"),
        signer=state.signer,
        tenant_id=config.tenant_id,
        now=state.clock(),
    )
    if not request.query.get("api-version"):
        raise errors.arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    match = request.match_info
    if match["subscription"].lower() != config.subscription_id.lower():
        raise errors.arm_error(
            404,
            "SubscriptionNotFound",
            f"The subscription '{match['subscription']}' could not be found.",
        )
    if match["group"].lower() != config.resource_group.lower():
        raise errors.arm_error(
            404, "ResourceGroupNotFound", f"Resource group '{match['group']}' could not be found."
        )
    if match["account"].lower() != config.account_name.lower():
        raise errors.arm_error(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.CognitiveServices/accounts/{match['account']}' under "
            f"resource group '{match['group']}' was not found. For more details please go to "
            f"https://aka.ms/ARMResourceNotFoundFix",
        )
    return state


def _account_id(state: EmulatorState) -> str:
    c = state.config
    return (
        f"/subscriptions/{c.subscription_id}/resourceGroups/{c.resource_group}"
        f"/providers/Microsoft.CognitiveServices/accounts/{c.account_name}"
    )


def _account(request: web.Request, state: EmulatorState) -> dict[str, Any]:
    config = state.config
    endpoint = str(request.url.origin()) + "/"
    return {
        "id": _account_id(state),
        "name": config.account_name,
        "type": "Microsoft.CognitiveServices/accounts",
        "etag": f'"{uuid.uuid5(uuid.NAMESPACE_URL, _account_id(state))}"',
        "location": config.region.replace(" ", "").lower(),
        "kind": "OpenAI",
        "sku": {"name": "S0"},
        "tags": {},
        "properties": {
            "endpoint": endpoint,
            "endpoints": {
                "OpenAI Language Model Instance API": endpoint,
                "OpenAI Dall-E API": endpoint,
                "OpenAI Whisper API": endpoint,
                "Token Service API": endpoint,
            },
            "internalId": uuid.uuid5(uuid.NAMESPACE_URL, endpoint).hex,
            "dateCreated": "2024-01-01T00:00:00.0000000Z",
            "customSubDomainName": config.account_name,
            "provisioningState": "Succeeded",
            "publicNetworkAccess": "Enabled",
            "disableLocalAuth": state.local_auth_disabled,
            "networkAcls": {"defaultAction": "Allow", "virtualNetworkRules": [], "ipRules": []},
        },
    }


def _deployment(state: EmulatorState, name: str) -> dict[str, Any]:
    spec = state.config.deployments[name]
    found = _MODEL_VERSION.match(spec.model)
    model, version = (found["name"], found["version"]) if found else (spec.model, "1")
    rate_limits = []
    if spec.effective_rpm:
        rate_limits.append(
            {"key": "request", "renewalPeriod": 10, "count": spec.effective_rpm // 6}
        )
    if spec.tpm:
        rate_limits.append({"key": "token", "renewalPeriod": 60, "count": spec.tpm})
    return {
        "id": f"{_account_id(state)}/deployments/{name}",
        "name": name,
        "type": "Microsoft.CognitiveServices/accounts/deployments",
        "sku": {"name": "Standard", "capacity": max(1, spec.tpm // 1000)},
        "properties": {
            "model": {"format": "OpenAI", "name": model, "version": version},
            "provisioningState": "Succeeded",
            "rateLimits": rate_limits,
        },
    }


async def get_account(request: web.Request) -> web.Response:
    state = _check(request)
    return _json(200, _account(request, state))


async def patch_account(request: web.Request) -> web.Response:
    state = _check(request)
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise errors.arm_error(
            400, "InvalidRequestContent", "The request content was invalid."
        ) from exc
    properties = body.get("properties") if isinstance(body, dict) else None
    if isinstance(properties, dict) and "disableLocalAuth" in properties:
        state.local_auth_disabled = bool(properties["disableLocalAuth"])
    return _json(200, _account(request, state))


async def list_keys(request: web.Request) -> web.Response:
    state = _check(request)
    key1, key2 = state.keys()
    return _json(200, {"key1": key1, "key2": key2})


async def regenerate_key(request: web.Request) -> web.Response:
    state = _check(request)
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    name = body.get("keyName") if isinstance(body, dict) else None
    slots: dict[str, KeyName] = {"key1": "key1", "key2": "key2"}
    slot = slots.get(name.lower()) if isinstance(name, str) else None
    if slot is None:
        raise errors.arm_error(
            400, "InvalidRequestContent", "The keyName must be 'Key1' or 'Key2'."
        )
    key1, key2 = state.regenerate(slot)
    return _json(200, {"key1": key1, "key2": key2})


async def list_deployments(request: web.Request) -> web.Response:
    state = _check(request)
    return _json(200, {"value": [_deployment(state, n) for n in state.config.deployments]})


async def get_deployment(request: web.Request) -> web.Response:
    state = _check(request)
    name = request.match_info["deployment"]
    if name not in state.config.deployments:
        raise errors.arm_error(
            404,
            "DeploymentNotFound",
            f"Deployment '{name}' not found under account '{state.config.account_name}'.",
        )
    return _json(200, _deployment(state, name))


def routes() -> list[web.RouteDef]:
    return [
        web.get(ACCOUNT_PATH, get_account),
        web.patch(ACCOUNT_PATH, patch_account),
        web.post(ACCOUNT_PATH + "/listKeys", list_keys),
        web.post(ACCOUNT_PATH + "/regenerateKey", regenerate_key),
        web.get(ACCOUNT_PATH + "/deployments", list_deployments),
        web.get(ACCOUNT_PATH + "/deployments/{deployment}", get_deployment),
    ]
