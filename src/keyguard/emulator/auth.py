"""Who is calling: pure decisions over header values, the current keys and ``now``.

Data plane (Azure OpenAI): an ``api-key`` header (or ``Ocp-Apim-Subscription-Key``) equal to
key1 or key2, compared in constant time; or ``Authorization: Bearer <token>`` with an Entra
token for ``https://cognitiveservices.azure.com``; or ``Authorization: Bearer <key>`` (what the
plain ``openai.OpenAI`` client sends to the v1 API). A key header together with a *different*
bearer value is refused with 400, as Azure does.

Management plane (ARM): ``Authorization: Bearer`` with a token for
``https://management.azure.com``, refused with ARM's codes and a ``WWW-Authenticate`` header.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from keyguard.emulator import errors
from keyguard.emulator.signing import TokenError, TokenSigner

__all__ = [
    "DATA_PLANE_AUDIENCES",
    "MANAGEMENT_AUDIENCES",
    "Caller",
    "bearer_value",
    "looks_like_jwt",
    "match_key",
    "authenticate_data_plane",
    "authenticate_management",
]

DATA_PLANE_AUDIENCES = frozenset(
    {"https://cognitiveservices.azure.com", "https://cognitiveservices.azure.com/"}
)
MANAGEMENT_AUDIENCES = frozenset(
    {
        "https://management.core.windows.net/",
        "https://management.core.windows.net",
        "https://management.azure.com/",
        "https://management.azure.com",
    }
)
Slot = Literal["key1", "key2", "entra"]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated data-plane caller: which key slot, or an Entra principal."""

    slot: Slot
    oid: str | None = None


def bearer_value(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer x`` header, else ``None``."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def looks_like_jwt(value: str) -> bool:
    return value.startswith("eyJ") and value.count(".") == 2


def match_key(presented: str, keys: tuple[str, str]) -> Slot | None:
    """``"key1"``/``"key2"`` when ``presented`` equals that key (both compared, constant time)."""
    raw = presented.encode()
    first = hmac.compare_digest(raw, keys[0].encode())
    second = hmac.compare_digest(raw, keys[1].encode())
    if first:
        return "key1"
    if second:
        return "key2"
    return None


def _missing_key() -> errors.AzureError:
    return errors.AzureError(
        401,
        {
            "error": {
                "code": "401",
                "message": "Access denied due to missing subscription key. Make sure to include "
                "subscription key when making requests to an API.",
            }
        },
    )


def authenticate_data_plane(
    *,
    api_key: str | None,
    authorization: str | None,
    keys: tuple[str, str],
    signer: TokenSigner,
    now: float,
    local_auth_disabled: bool,
) -> Caller:
    """The caller, or raise the :class:`~keyguard.emulator.errors.AzureError` Azure would send."""
    bearer = bearer_value(authorization)
    if authorization is not None and bearer is None and api_key is None:
        raise errors.invalid_token()
    if api_key is not None and bearer is not None and bearer != api_key:
        raise errors.key_and_token()
    if api_key is None and bearer is not None and looks_like_jwt(bearer):
        try:
            claims = signer.verify(bearer, now=now, audiences=DATA_PLANE_AUDIENCES)
        except TokenError as exc:
            raise errors.invalid_token() from exc
        oid = claims.get("oid")
        return Caller("entra", oid if isinstance(oid, str) else None)
    key = api_key if api_key is not None else bearer
    if key is None:
        raise _missing_key()
    if local_auth_disabled:
        raise errors.local_auth_disabled()
    slot = match_key(key, keys)
    if slot is None:
        raise errors.invalid_key()
    return Caller(slot)


def _arm_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%m/%d/%Y %H:%M:%S")


def authenticate_management(
    authorization: str | None, *, signer: TokenSigner, tenant_id: str, now: float
) -> dict[str, object]:
    """The token's claims, or raise ARM's 401 for a missing, invalid or foreign token."""
    challenge = f'Bearer authorization_uri="https://login.windows.net/{tenant_id}", '

    def fail(code: str, message: str) -> errors.AzureError:
        header = challenge + f'error="invalid_token", error_description="{message}"'
        return errors.arm_error(401, code, message, {"WWW-Authenticate": header})

    if authorization is None:
        raise fail(
            "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
        )
    token = bearer_value(authorization)
    if token is None:
        raise fail(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
        )
    try:
        return dict(signer.verify(token, now=now, audiences=MANAGEMENT_AUDIENCES))
    except TokenError as exc:
        if exc.reason == "expired":
            exp = exc.claims.get("exp", 0)
            raise fail(
                "ExpiredAuthenticationToken",
                f"The access token expiry UTC time '{_arm_time(float(exp))}' is earlier than "
                f"current UTC time '{_arm_time(now)}'.",
            ) from exc
        if exc.reason == "audience":
            allowed = ",".join(f"'{a}'" for a in sorted(MANAGEMENT_AUDIENCES, reverse=True))
            raise fail(
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource "
                f"'{exc.claims.get('aud')}'. It should exactly match with one of the allowed "
                f"audiences {allowed}.",
            ) from exc
        raise fail("InvalidAuthenticationToken", "The access token is invalid.") from exc
