"""Find the client's credential in a request's headers: pure, no lookups.

SDKs send the app's credential in ``api-key``, in ``Authorization: Bearer``, or (openai-python
1.x up to 2.33) in both. When both are present they must be the same string (compared in
constant time). The credential is then classified without any lookup:

* ``keyguard``  a well-formed Keyguard key (prefix, length and checksum verified);
* ``jwt``       three base64url parts starting ``eyJ`` (an Entra ID access token);
* ``azure_key`` an Azure OpenAI key (84-character identifiable or 32-hex): refused, and a
                security event, because an app should never hold one;
* anything else is refused as malformed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from ..errors import AuthenticationFailed
from ..keys.format import PREFIX, ParsedKey, parse_key

__all__ = ["Credential", "credential_digest", "extract_credential", "MAX_CREDENTIAL_LENGTH"]

# A process-wide random key: digests of refused credentials compare within this process only,
# and say nothing about the credential to anyone who reads them.
_DIGEST_KEY = secrets.token_bytes(16)


def credential_digest(value: str) -> str:
    """A short keyed digest of a presented credential (never the credential itself)."""
    data = value[:MAX_CREDENTIAL_LENGTH].encode("utf-8", "replace")
    return hashlib.blake2b(data, digest_size=8, key=_DIGEST_KEY).hexdigest()


Kind = Literal["keyguard", "jwt", "azure_key"]
MAX_CREDENTIAL_LENGTH = 8192

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_AZURE_IDENTIFIABLE = re.compile(r"[A-Za-z0-9]{52}JQQJ9[9DH][A-Za-z0-9]{26}")
_AZURE_LEGACY = re.compile(r"[0-9a-fA-F]{32}")


@dataclass(frozen=True, slots=True)
class Credential:
    kind: Kind
    value: str
    key: ParsedKey | None = None


def _bearer(header: str) -> str:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "The Authorization header must be 'Bearer <your Keyguard key or Entra ID token>'.",
            reason="bad_authorization_header",
        )
    return token.strip()


def extract_credential(api_key: str | None, authorization: str | None) -> Credential:
    """Classify the credential in ``api-key`` / ``Authorization``; raise when unusable."""
    bearer = _bearer(authorization) if authorization is not None else None
    key = api_key.strip() if api_key is not None else None
    if key is not None and bearer is not None:
        if not hmac.compare_digest(key.encode(), bearer.encode()):
            raise AuthenticationFailed(
                "The 'api-key' and 'Authorization' headers carry different credentials. "
                "Send one credential, in one of them.",
                reason="conflicting_credentials",
            )
    value = key if key is not None else bearer
    if not value:
        raise AuthenticationFailed(
            "Access denied: no credential. Send your Keyguard key in the 'api-key' header "
            "(or 'Authorization: Bearer <key>').",
            reason="missing_credential",
        )
    if len(value) > MAX_CREDENTIAL_LENGTH:
        raise AuthenticationFailed("The credential is too long.", reason="oversized_credential")
    if value.startswith(PREFIX):
        parsed = parse_key(value)
        if parsed is None:
            raise AuthenticationFailed(
                "The Keyguard key is malformed (wrong length or checksum). Copy the whole key "
                "as 'keyguard keys create' printed it.",
                reason="malformed_key",
            )
        return Credential("keyguard", value, parsed)
    if _JWT.fullmatch(value):
        return Credential("jwt", value)
    if _AZURE_IDENTIFIABLE.fullmatch(value) or _AZURE_LEGACY.fullmatch(value):
        return Credential("azure_key", value)
    raise AuthenticationFailed(
        "Access denied: the credential is not a Keyguard key. Use the key from "
        "'keyguard keys create' (it starts with 'kgk_').",
        reason="unrecognised_credential",
    )
