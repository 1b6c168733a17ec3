"""A small local OIDC issuer for tests: real RSA and EC keys, a real JWKS over HTTPS.

Its tokens look like Entra ID v1 access tokens (``iss = https://sts.windows.net/{tid}/``,
``appid``, ``oid``, ``tid``, ``idtyp``). Tests mint good tokens and every kind of bad one
(``alg: none``, HS256 keyed with the RSA public key, wrong issuer, tenant or audience,
expired, not yet valid, unknown ``kid``, truncated, oversized) and count JWKS fetches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from keyguard.emulator.tls import ensure_certificates, server_ssl_context

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
AUDIENCE = "api://keyguard-test"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def entra_claims(
    issuer: str, tenant: str, audience: str, now: float | None = None, **overrides: Any
) -> dict[str, Any]:
    """The claims of an Entra v1 app-only access token issued now, with ``overrides``
    (``None`` removes a claim)."""
    at = int(time.time() if now is None else now)
    base = {
        "aud": audience,
        "iss": issuer,
        "iat": at,
        "nbf": at,
        "exp": at + 3600,
        "appid": "11111111-1111-1111-1111-111111111111",
        "appidacr": "2",
        "idtyp": "app",
        "oid": str(uuid.uuid4()),
        "sub": str(uuid.uuid4()),
        "tid": tenant,
        "ver": "1.0",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@dataclass
class LocalIssuer:
    url: str
    ca_file: Path
    tenant: str = TENANT
    rsa_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    ec_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    extra: dict[str, Any] = field(default_factory=dict)  # kid -> private key, published too
    fetches: int = 0
    fail: bool = False
    runner: web.AppRunner | None = None

    @property
    def issuer(self) -> str:
        return f"https://sts.windows.net/{self.tenant}/"

    @property
    def jwks_uri(self) -> str:
        return f"{self.url}/{self.tenant}/discovery/v2.0/keys"

    def entra(self, **overrides: Any) -> dict[str, Any]:
        """An ``access.entra`` config section that trusts this issuer (``overrides`` added)."""
        return {
            "tenants": [self.tenant],
            "audiences": [AUDIENCE],
            "jwks_uri": self.jwks_uri,
            "ca_file": str(self.ca_file),
            **overrides,
        }

    def public_pem(self) -> bytes:
        return self.rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwks(self) -> dict[str, Any]:
        keys = [
            {
                **RSAAlgorithm.to_jwk(self.rsa_key.public_key(), as_dict=True),
                "kid": "rsa-1",
                "use": "sig",
            },
            {**ECAlgorithm.to_jwk(self.ec_key.public_key(), as_dict=True), "kid": "ec-1"},
            {"kty": "oct", "kid": "hmac-1", "k": b64url(b"not a signing key for tokens")},
        ]
        for kid, key in self.extra.items():
            keys.append({**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid})
        return {"keys": keys}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return entra_claims(self.issuer, self.tenant, AUDIENCE, **overrides)

    def mint(
        self,
        *,
        alg: str = "RS256",
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        payload = self.claims(**claims)
        if alg == "ES256":
            key: Any = self.ec_key
            kid = kid or "ec-1"
        else:
            key = self.extra.get(kid or "", self.rsa_key)
            kid = kid or "rsa-1"
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, **(headers or {})})

    def raw(self, header: dict[str, Any], **claims: Any) -> str:
        """RS256 over any header (PyJWT refuses to write some, e.g. ``crit``)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        head = b64url(json.dumps({"alg": "RS256", "kid": "rsa-1", **header}).encode())
        body = b64url(json.dumps(self.claims(**claims)).encode())
        signature = self.rsa_key.sign(
            f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{head}.{body}.{b64url(signature)}"

    def unsigned(self, **claims: Any) -> str:
        """``alg: none``."""
        header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).encode())
        body = b64url(json.dumps(self.claims(**claims)).encode())
        return f"{header}.{body}."

    def hs256_with_public_key(self, **claims: Any) -> str:
        """The classic confusion attack: HMAC-SHA256 keyed with the RSA public key (PEM)."""
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        body = b64url(json.dumps(self.claims(**claims)).encode())
        mac = hmac.new(self.public_pem(), f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{b64url(mac)}"

    def signed_by_stranger(self, **claims: Any) -> str:
        """A well-formed RS256 token for kid rsa-1, signed with some other key."""
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(
            self.claims(**claims), stranger, algorithm="RS256", headers={"kid": "rsa-1"}
        )

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def start_issuer(tls_dir: Path) -> LocalIssuer:
    tls = ensure_certificates(tls_dir, ["127.0.0.1"])
    state: dict[str, LocalIssuer] = {}

    async def keys(request: web.Request) -> web.Response:
        issuer = state["issuer"]
        issuer.fetches += 1
        if issuer.fail:
            return web.Response(status=503)
        return web.json_response(issuer.jwks())

    async def openid(request: web.Request) -> web.Response:
        issuer = state["issuer"]
        return web.json_response({"issuer": issuer.issuer, "jwks_uri": issuer.jwks_uri})

    app = web.Application()
    app.router.add_get("/{tenant}/discovery/v2.0/keys", keys)
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(tls))
    await site.start()
    port = runner.addresses[0][1]
    issuer = LocalIssuer(url=f"https://127.0.0.1:{port}", ca_file=tls.ca_cert, runner=runner)
    state["issuer"] = issuer
    return issuer
