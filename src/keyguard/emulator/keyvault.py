"""An Azure Key Vault secrets endpoint: the REST subset ``azure-keyvault-secrets`` uses.

On the emulator's own origin (use it as ``vault_url``, over TLS: the SDK refuses bearer tokens
on plain HTTP), with ``?api-version=`` on every call:

* ``PUT  /secrets/{name}``                      set: a new version, ``{"value", "contentType"?,
  "tags"?, "attributes"?}`` -> the secret bundle;
* ``GET  /secrets/{name}[/]``                    the latest enabled version;
* ``GET  /secrets/{name}/{version}``             one version;
* ``GET  /secrets/{name}/versions``              the versions' items (no values);
* ``GET  /secrets``                              one item per secret (no values).

Authentication is Key Vault's challenge protocol: a request without a valid bearer token gets
``401`` with ``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/
{tenant}", resource="https://vault.azure.net"``; the SDK then asks its credential for a token
for that resource (the emulator's identity endpoints issue them) and retries. Tokens are
checked like the data plane's: signature, expiry, issuer, audience ``https://vault.azure.net``.
Since the emulator's host is not under ``vault.azure.net``, clients pass
``verify_challenge_resource=False``.

Bodies and ids follow Key Vault's: a version is 32 hex characters, ``id`` is
``{vault}/secrets/{name}/{version}``, times are epoch seconds in ``attributes``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from keyguard.emulator import errors
from keyguard.emulator.appkeys import STATE_KEY
from keyguard.emulator.auth import bearer_value
from keyguard.emulator.signing import TokenError

__all__ = ["KEYVAULT_KEY", "KeyVaultState", "SecretVersion", "register", "VAULT_AUDIENCES"]

VAULT_AUDIENCES = frozenset({"https://vault.azure.net", "https://vault.azure.net/"})
_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_VERSION = re.compile(r"[0-9a-f]{32}")
MAX_VALUE_BYTES = 25 * 1024


@dataclass(frozen=True, slots=True)
class SecretVersion:
    version: str
    value: str
    created: int
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    enabled: bool = True


@dataclass(slots=True)
class KeyVaultState:
    """Secret versions by name, oldest first; ``reads`` counts successful GETs of a value."""

    secrets: dict[str, list[SecretVersion]] = field(default_factory=dict)
    reads: int = 0

    def set(self, name: str, value: str, now: int, **extra: Any) -> SecretVersion:
        entry = SecretVersion(uuid.uuid4().hex, value, now, **extra)
        self.secrets.setdefault(name, []).append(entry)
        return entry

    def latest(self, name: str) -> SecretVersion | None:
        enabled = [v for v in self.secrets.get(name, []) if v.enabled]
        return enabled[-1] if enabled else None


KEYVAULT_KEY: web.AppKey[KeyVaultState] = web.AppKey("emulator_keyvault", KeyVaultState)


def _kv_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> errors.AzureError:
    return errors.AzureError(status, {"error": {"code": code, "message": message}}, headers)


def _challenge(tenant: str, error: str | None = None) -> dict[str, str]:
    value = (
        f'Bearer authorization="https://login.microsoftonline.com/{tenant}", '
        'resource="https://vault.azure.net"'
    )
    if error is not None:
        value += f', error="{error}"'
    return {"WWW-Authenticate": value}


def _check(request: web.Request) -> KeyVaultState:
    """Authenticate (Key Vault's challenge), then require an api-version."""
    state = request.app[STATE_KEY]
    tenant = state.config.tenant_id
    token = bearer_value(request.headers.get("Authorization"))
    if token is None:
        raise _kv_error(
            401,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.",
            _challenge(tenant),
        )
    try:
        state.signer.verify(token, now=state.clock(), audiences=VAULT_AUDIENCES)
    except TokenError as exc:
        message = {
            "expired": "AKV10032: Token expired.",
            "audience": "AKV10022: Invalid audience.",
        }.get(exc.reason, "AKV10000: Request is missing a valid Bearer token.")
        raise _kv_error(401, "Unauthorized", message, _challenge(tenant, "invalid_token")) from exc
    if not request.query.get("api-version"):
        raise _kv_error(400, "BadParameter", "The api-version query parameter is required.")
    return request.app[KEYVAULT_KEY]


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not _NAME.fullmatch(name):
        raise _kv_error(400, "BadParameter", f"The request URI contains an invalid name: {name}")
    return name


def _not_found(name: str, version: str | None = None) -> errors.AzureError:
    what = name if version is None else f"{name}/{version}"
    return _kv_error(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {what} was not found in this key vault. If you recently "
        "deleted this secret you may be able to recover it using the correct recovery command. "
        "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def _attributes(entry: SecretVersion) -> dict[str, Any]:
    return {
        "enabled": entry.enabled,
        "created": entry.created,
        "updated": entry.created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    }


def _item(request: web.Request, name: str, entry: SecretVersion, *, with_version: bool) -> Any:
    origin = str(request.url.origin())
    item: dict[str, Any] = {
        "id": f"{origin}/secrets/{name}" + (f"/{entry.version}" if with_version else ""),
        "attributes": _attributes(entry),
    }
    if entry.tags:
        item["tags"] = dict(entry.tags)
    if entry.content_type is not None:
        item["contentType"] = entry.content_type
    return item


def _bundle(request: web.Request, name: str, entry: SecretVersion) -> web.Response:
    body = _item(request, name, entry, with_version=True)
    body["value"] = entry.value
    return _json(200, body)


def _json(status: int, body: dict[str, Any]) -> web.Response:
    response = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
    response.headers["x-ms-request-id"] = str(uuid.uuid4())
    response.headers["x-ms-keyvault-service-version"] = "1.9.0.0"
    return response


async def set_secret(request: web.Request) -> web.Response:
    vault = _check(request)
    name = _name(request)
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise _kv_error(400, "BadParameter", "The request body is not valid JSON.") from exc
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, str) or len(value.encode()) > MAX_VALUE_BYTES:
        raise _kv_error(400, "BadParameter", "Property value is required (at most 25 KB).")
    attributes = body.get("attributes") if isinstance(body.get("attributes"), dict) else {}
    tags = body.get("tags") if isinstance(body.get("tags"), dict) else {}
    content_type = body.get("contentType") if isinstance(body.get("contentType"), str) else None
    entry = vault.set(
        name,
        value,
        int(request.app[STATE_KEY].clock()),
        content_type=content_type,
        tags={str(k): str(v) for k, v in tags.items()},
        enabled=attributes.get("enabled", True) is not False,
    )
    return _bundle(request, name, entry)


async def get_secret(request: web.Request) -> web.Response:
    vault = _check(request)
    name = _name(request)
    version = request.match_info.get("version", "")
    if version:
        if not _VERSION.fullmatch(version):
            raise _not_found(name, version)
        found = [v for v in vault.secrets.get(name, []) if v.version == version]
        if not found:
            raise _not_found(name, version)
        entry = found[0]
        if not entry.enabled:
            raise _kv_error(403, "Forbidden", "Operation get is not allowed on a disabled secret.")
    else:
        latest = vault.latest(name)
        if latest is None:
            raise _not_found(name)
        entry = latest
    vault.reads += 1
    return _bundle(request, name, entry)


async def list_versions(request: web.Request) -> web.Response:
    vault = _check(request)
    name = _name(request)
    items = [_item(request, name, v, with_version=True) for v in vault.secrets.get(name, [])]
    return _json(200, {"value": items, "nextLink": None})


async def list_secrets(request: web.Request) -> web.Response:
    vault = _check(request)
    items = [
        _item(request, name, versions[-1], with_version=False)
        for name, versions in sorted(vault.secrets.items())
        if versions
    ]
    return _json(200, {"value": items, "nextLink": None})


def register(app: web.Application) -> None:
    """Add the Key Vault state and routes to the emulator's application."""
    app[KEYVAULT_KEY] = KeyVaultState()
    router = app.router
    router.add_get("/secrets", list_secrets)
    router.add_put("/secrets/{name}", set_secret)
    router.add_get("/secrets/{name}", get_secret)
    router.add_get("/secrets/{name}/", get_secret)
    router.add_get("/secrets/{name}/versions", list_versions)
    router.add_get("/secrets/{name}/{version}", get_secret)
