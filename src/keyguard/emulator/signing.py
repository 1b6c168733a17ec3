"""RS256 access tokens like Entra ID's, signed and checked with ``cryptography``.

Tokens are v1.0 Entra access tokens for a managed identity: ``aud`` is the requested resource,
``iss`` is ``https://sts.windows.net/{tid}/``, with ``oid``/``sub``/``tid``/``appid`` claims and
``idtyp: "app"``. One RSA key per process signs every emulator's tokens (Entra too signs all
tenants' tokens with shared keys); the public half is served as a JWKS so a gateway can check
them exactly as it checks real ones. :meth:`TokenSigner.verify` takes ``now``: it is pure.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import uuid
from collections.abc import Collection
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["TokenError", "TokenSigner", "access_token_claims", "issuer_for", "principal_id"]


class TokenError(Exception):
    """A bearer token that is not acceptable; ``reason`` is one of
    ``malformed``, ``signature``, ``expired``, ``not_yet_valid``, ``audience``, ``issuer``."""

    def __init__(self, reason: str, claims: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.claims = claims or {}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issuer_for(tenant_id: str) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


def principal_id(tenant_id: str, client_id: str) -> str:
    """The stable object id (``oid``) the emulator gives the identity ``client_id``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"keyguard-emulator:{tenant_id}:{client_id}"))


def access_token_claims(
    *, resource: str, tenant_id: str, client_id: str, mi_resource_id: str, now: int, lifetime: int
) -> dict[str, Any]:
    """Claims of a managed-identity access token for ``resource`` issued at ``now``."""
    oid = principal_id(tenant_id, client_id)
    return {
        "aud": resource,
        "iss": issuer_for(tenant_id),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "aio": _b64url(hashlib.sha256(f"{oid}{now}".encode()).digest()[:24]),
        "appid": client_id,
        "appidacr": "2",
        "idp": issuer_for(tenant_id),
        "idtyp": "app",
        "oid": oid,
        "rh": "0.emulator.",
        "sub": oid,
        "tid": tenant_id,
        "uti": _b64url(uuid.uuid4().bytes),
        "ver": "1.0",
        "xms_mirid": mi_resource_id,
    }


@functools.cache
def _process_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class TokenSigner:
    """Issues and verifies RS256 JWTs for one tenant."""

    def __init__(self, tenant_id: str, key: rsa.RSAPrivateKey | None = None) -> None:
        self._key = key or _process_key()
        self._public = self._key.public_key()
        numbers = self._public.public_numbers()
        self._n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        self._e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        self.kid = _b64url(hashlib.sha1(self._n).digest())  # Entra's kid/x5t look like this
        self.issuer = issuer_for(tenant_id)
        self._header = _b64url(
            orjson.dumps({"typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid})
        )

    def issue(self, claims: dict[str, Any]) -> str:
        signing_input = f"{self._header}.{_b64url(orjson.dumps(claims))}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def verify(self, token: str, *, now: float, audiences: Collection[str]) -> dict[str, Any]:
        """The claims of a valid token; raise :class:`TokenError` otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("malformed")
        try:
            header = orjson.loads(_unb64url(parts[0]))
            claims = orjson.loads(_unb64url(parts[1]))
            signature = _unb64url(parts[2])
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise TokenError("malformed") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenError("malformed")
        if header.get("alg") != "RS256" or header.get("kid") != self.kid:
            raise TokenError("signature")
        try:
            self._public.verify(
                signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature as exc:
            raise TokenError("signature") from exc
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int) or not isinstance(nbf, int):
            raise TokenError("malformed", claims)
        if now >= exp:
            raise TokenError("expired", claims)
        if now < nbf:
            raise TokenError("not_yet_valid", claims)
        if claims.get("iss") != self.issuer:
            raise TokenError("issuer", claims)
        if claims.get("aud") not in audiences:
            raise TokenError("audience", claims)
        return claims

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK Set (``/{tenant}/discovery/v2.0/keys``)."""
        key = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64url(self._n),
            "e": _b64url(self._e),
            "alg": "RS256",
        }
        return {"keys": [key]}
