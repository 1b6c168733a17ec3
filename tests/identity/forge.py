"""Tokens with any header and any claims, signed for real by the emulator's Entra issuer.

:class:`ServedSigner` is the emulator's own :class:`~keyguard.emulator.signing.TokenSigner`
with a key the test holds, installed as the emulator's signer: the emulator's managed-identity
endpoints issue tokens with it and its JWKS endpoint serves its public half -- plus whatever
hostile entries a test adds (``extra``), or another JWKS altogether (``replace``).
:meth:`ServedSigner.forge` signs any header and claims (dicts, or raw JSON text for values
JSON libraries will not write, such as ``NaN`` or a 400-digit number) with that key.
:func:`start_gateway`, :func:`call_proxy` and :func:`call_admin` run a gateway trusting it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyguard.emulator import RunningEmulator
from keyguard.emulator.signing import TokenSigner
from keyguard.server import Gateway
from tests.support.emulators import API_VERSION
from tests.support.gateway import store_secrets
from tests.support.issuer import b64url, entra_claims
from tests.support.settings import keyguard_settings, upstream

AUDIENCE = "api://keyguard-gateway"
BOUND_CLIENT = "0b0b0b0b-0000-4000-8000-00000000b0bb"  # bound-app's client id in POLICY
UNBOUND_CLIENT = "99999999-8888-4777-8666-555555555555"
ADMIN_GROUP = "5e5e5e5e-0000-4000-8000-000000000005"  # viewers of the admin API
CHAT = f"/openai/deployments/gpt-4o-mini/chat/completions?api-version={API_VERSION}"
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
POLICY = f"""
apps:
  bound-app: {{entra_client_ids: ["{BOUND_CLIENT}"]}}
roles:
  chat:
    operations: [chat]
    deployments: [gpt-4o-mini]
bindings:
  - {{name: bound-chat, role: chat, subjects: ["app:bound-app"]}}
"""
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _json(value: dict[str, Any] | str) -> bytes:
    return (value if isinstance(value, str) else json.dumps(value)).encode()


class ServedSigner(TokenSigner):
    def __init__(self, tenant: str, key: rsa.RSAPrivateKey = _KEY) -> None:
        super().__init__(tenant, key)
        self.tenant = tenant
        self.private_key = key
        self.extra: list[Any] = []  # entries served before the real key
        self.replace: Any = None  # when set: the whole JWKS answer

    def jwks(self) -> dict[str, Any]:
        if self.replace is not None:
            return self.replace  # type: ignore[no-any-return]
        return {"keys": [*self.extra, *super().jwks()["keys"]]}

    def header(self, **overrides: Any) -> dict[str, Any]:
        base = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def claims(self, now: float | None = None, **overrides: Any) -> dict[str, Any]:
        return entra_claims(
            self.issuer, self.tenant, AUDIENCE, now, **{"appid": BOUND_CLIENT, **overrides}
        )

    def forge(
        self,
        header: dict[str, Any] | str | None = None,
        claims: dict[str, Any] | str | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        """RS256 over exactly these header and claims bytes (defaults: a good token)."""
        head = b64url(_json(self.header() if header is None else header))
        body = b64url(_json(self.claims() if claims is None else claims))
        signature = (key or self.private_key).sign(
            f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{head}.{body}.{b64url(signature)}"


async def start_access_gateway(
    tmp: Path,
    upstream_url: str,
    upstream_key: str,
    access: dict[str, Any],
    *,
    policy: str | None = None,
    monitor: dict[str, Any] | None = None,
) -> Gateway:
    """A started gateway (the caller stops it) with ``access`` and ``policy`` (YAML)."""
    options: dict[str, Any] = {"access": access, "policy": policy}
    if monitor is not None:
        options["monitor"] = monitor
    settings = keyguard_settings(tmp, upstreams=[upstream(upstream_url)], **options)
    await store_secrets(settings, {"upstream/emulator": upstream_key})
    gateway = Gateway(settings, {})
    await gateway.start()
    return gateway


async def start_gateway(
    tmp: Path,
    upstream: RunningEmulator,
    idp: RunningEmulator,
    *,
    monitor: dict[str, Any] | None = None,
    **entra: Any,
) -> tuple[Gateway, str]:
    """A gateway trusting the emulator's issuer, with POLICY, Entra admins (ADMIN_GROUP:
    viewer), and a Keyguard key of bound-app (returned with it)."""
    gateway = await start_access_gateway(
        tmp,
        upstream.url,
        upstream.keys()[0],
        {
            "entra": entra_access(idp, **entra),
            "admin": {"entra_groups": {ADMIN_GROUP: "viewer"}},
        },
        policy=POLICY,
        monitor=monitor,
    )
    rt: Any = gateway.runtime
    _, key = await rt.keys.create("bound-app", now=datetime.now(UTC))
    return gateway, key


async def call_proxy(
    gateway: Gateway, credential: str, header: str = "Authorization"
) -> tuple[int, Any]:
    """A chat request with ``credential`` in ``header``: the status and the JSON answer."""
    value = f"Bearer {credential}" if header == "Authorization" else credential
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.proxy_url + CHAT, json=BODY, headers={header: value}) as resp:
            return resp.status, await resp.json(content_type=None)


async def call_admin(gateway: Gateway, token: str) -> tuple[int, Any]:
    """``GET /admin/whoami`` with ``token``: the status and the JSON answer."""
    async with aiohttp.ClientSession() as http:
        async with http.get(
            gateway.admin_url + "/admin/whoami", headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            return resp.status, await resp.json(content_type=None)


def install_signer(idp: RunningEmulator) -> ServedSigner:
    signer = ServedSigner(idp.config.tenant_id)
    idp.state.signer = signer
    return signer


def entra_access(idp: RunningEmulator, **overrides: Any) -> dict[str, Any]:
    """``access.entra`` trusting the emulator's issuer (its JWKS over HTTPS)."""
    tenant = idp.config.tenant_id
    return {
        "tenants": [tenant],
        "audiences": [AUDIENCE],
        "jwks_uri": f"{idp.url}/{tenant}/discovery/v2.0/keys",
        "ca_file": str(idp.ca_file),
        **overrides,
    }


def guid() -> str:
    return str(uuid.uuid4())
