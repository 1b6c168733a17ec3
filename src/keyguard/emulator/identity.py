"""Managed-identity token endpoints and the signing keys' discovery documents.

* IMDS shape (VMs, AKS): ``GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R``
  with ``Metadata: true``. Point azure-identity at it with
  ``AZURE_POD_IDENTITY_AUTHORITY_HOST=<emulator url>``.
* App Service shape: ``GET /msi/token?api-version=2019-08-01&resource=R`` with
  ``X-IDENTITY-HEADER: <config.identity_header>``. Point azure-identity at it with
  ``IDENTITY_ENDPOINT=<emulator url>/msi/token`` and ``IDENTITY_HEADER=<secret>``.

Both answer ``{access_token, expires_in, expires_on, not_before, resource, token_type,
client_id}`` with the numbers as decimal strings, as Azure does (azure-identity and MSAL
``int()`` them). A ``client_id`` query parameter selects a user-assigned identity: each client
id gets its own stable ``oid``. ``/{tenant}/discovery/keys`` (and ``.../v2.0/keys``) serve the
JWKS; ``/{tenant}/.well-known/openid-configuration`` the issuer metadata (with the
sign-in endpoints of :mod:`.signin`).
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from aiohttp import web

from keyguard.emulator.appkeys import STATE_KEY
from keyguard.emulator.signing import access_token_claims
from keyguard.emulator.state import EmulatorState

__all__ = ["imds_token", "app_service_token", "jwks", "openid_configuration", "issue_token"]


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def issue_token(
    state: EmulatorState, resource: str, client_id: str | None = None
) -> dict[str, str]:
    """A token answer for ``resource`` (also what tests call to get tokens directly)."""
    config = state.config
    resource = resource.removesuffix("/.default")
    client = client_id or config.client_id
    now = int(state.clock())
    mi_resource = (
        f"/subscriptions/{config.subscription_id}/resourcegroups/{config.resource_group}"
        f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi-{client[:8]}"
    )
    claims = access_token_claims(
        resource=resource,
        tenant_id=config.tenant_id,
        client_id=client,
        mi_resource_id=mi_resource,
        now=now,
        lifetime=config.token_lifetime,
    )
    lifetime = str(config.token_lifetime)
    return {
        "access_token": state.signer.issue(claims),
        "refresh_token": "",
        "expires_in": lifetime,
        "expires_on": str(now + config.token_lifetime),
        "ext_expires_in": lifetime,
        "not_before": str(now),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client,
    }


async def imds_token(request: web.Request) -> web.Response:
    if request.headers.get("Metadata", "").lower() != "true":
        return _json(
            400,
            {
                "error": "invalid_request",
                "error_description": "Required metadata header not specified",
            },
        )
    if "api-version" not in request.query:
        return _json(
            400,
            {
                "error": "invalid_request",
                "error_description": "Required query variable 'api-version' is missing",
            },
        )
    resource = request.query.get("resource")
    if not resource:
        return _json(
            400,
            {
                "error": "invalid_request",
                "error_description": "Required audience parameter not specified",
            },
        )
    return _json(200, issue_token(request.app[STATE_KEY], resource, request.query.get("client_id")))


async def app_service_token(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    secret = request.headers.get("X-IDENTITY-HEADER", "")
    if not hmac.compare_digest(secret.encode(), state.config.identity_header.encode()):
        return _json(
            401, {"statusCode": 401, "message": "Unauthorized: missing or wrong X-IDENTITY-HEADER"}
        )
    if request.query.get("api-version") != "2019-08-01":
        return _json(400, {"statusCode": 400, "message": "The api-version must be 2019-08-01"})
    resource = request.query.get("resource")
    if not resource:
        return _json(400, {"statusCode": 400, "message": "The resource parameter is required"})
    answer = issue_token(state, resource, request.query.get("client_id"))
    del answer["refresh_token"], answer["ext_expires_in"]
    return _json(200, answer)


async def jwks(request: web.Request) -> web.Response:
    return _json(200, request.app[STATE_KEY].signer.jwks())


async def openid_configuration(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    origin = str(request.url.origin())
    tenant = request.match_info.get("tenant", state.config.tenant_id)
    return _json(
        200,
        {
            "issuer": state.signer.issuer,
            "jwks_uri": f"{origin}/{tenant}/discovery/keys",
            "authorization_endpoint": f"{origin}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{origin}/{tenant}/oauth2/v2.0/token",
            "code_challenge_methods_supported": ["S256"],
            "response_types_supported": ["code", "id_token", "token id_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": "NA",
        },
    )
