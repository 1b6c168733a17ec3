"""What the browser carries between "Sign in with Entra ID" and Entra's redirect back: pure.

A sign-in's ``state`` (against login CSRF), ``nonce`` (binds the id_token to this sign-in)
and PKCE ``verifier`` (binds the code to this browser) are 256-bit random values. They travel
in one cookie, sealed with AES-256-GCM under a key the gateway keeps in its vault (so the
verifier is never readable by the page, the network or the identity provider, and a forged
or altered cookie does not open), with its expiry inside the sealed text. The cookie is
``HttpOnly``, ``SameSite=Lax`` (a ``Strict`` cookie is not sent on the identity provider's
top-level redirect back) and lives ``LIFETIME``. Over HTTPS it is ``Secure``, ``Path=/`` and
named with the ``__Host-`` prefix, which the browser refuses with a ``Domain``: a sibling
subdomain cannot plant one (a ``__Secure-`` cookie it can); otherwise it is scoped to the
callback path.

It is single use: the callback always deletes it, and :class:`Spent` remembers the states
already used until their expiry (bounded), so a copied cookie cannot be replayed on this
process; the identity provider's codes are single use too, and bound to the verifier.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "COOKIE",
    "LIFETIME",
    "SECURE_COOKIE",
    "PreAuth",
    "Spent",
    "challenge",
    "new_pre_auth",
    "open_cookie",
    "seal",
    "state_ok",
]

COOKIE = "kg_console_signin"
SECURE_COOKIE = "__Host-kg_console_signin"  # the name when the cookie is Secure (HTTPS)
LIFETIME = timedelta(minutes=10)
MAX_COOKIE = 1024
_AAD = b"keyguard console pre-auth v1"


@dataclass(frozen=True, slots=True)
class PreAuth:
    state: str
    nonce: str
    verifier: str
    expires: datetime


def new_pre_auth(now: datetime) -> PreAuth:
    token = secrets.token_urlsafe
    return PreAuth(token(32), token(32), token(48), now + LIFETIME)


def challenge(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def seal(pre_auth: PreAuth, key: bytes) -> str:
    """The cookie's value: ``pre_auth`` encrypted and authenticated under ``key``."""
    plain = orjson.dumps(
        {
            "s": pre_auth.state,
            "n": pre_auth.nonce,
            "v": pre_auth.verifier,
            "e": int(pre_auth.expires.timestamp()),
        }
    )
    iv = os.urandom(12)
    sealed = iv + AESGCM(key).encrypt(iv, plain, _AAD)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def open_cookie(value: str | None, key: bytes, now: datetime) -> PreAuth | None:
    """The pre-auth a cookie holds while unexpired; ``None`` for anything else (absent,
    oversized, not base64, altered, sealed under another key, expired, malformed)."""
    if not value or len(value) > MAX_COOKIE:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        plain = AESGCM(key).decrypt(raw[:12], raw[12:], _AAD) if len(raw) > 28 else b""
        fields = orjson.loads(plain)
    except (binascii.Error, ValueError, InvalidTag, orjson.JSONDecodeError):
        return None
    if not isinstance(fields, dict):
        return None
    state, nonce, verifier, expires = (fields.get(k) for k in ("s", "n", "v", "e"))
    if not all(isinstance(v, str) and v for v in (state, nonce, verifier)):
        return None
    if type(expires) is not int or expires <= now.timestamp():
        return None
    assert isinstance(state, str) and isinstance(nonce, str) and isinstance(verifier, str)
    return PreAuth(state, nonce, verifier, datetime.fromtimestamp(expires, now.tzinfo))


def state_ok(pre_auth: PreAuth, presented: str | None) -> bool:
    """Whether the redirect's ``state`` is the cookie's (compared in constant time)."""
    if not presented or len(presented) > 200:
        return False
    return hmac.compare_digest(pre_auth.state.encode(), presented.encode())


class Spent:
    """The states already used, each until its cookie's expiry; at most ``limit`` (the oldest
    goes first -- by then its cookie has nearly expired anyway)."""

    def __init__(self, limit: int = 10_000) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self._limit = limit
        self._spent: OrderedDict[str, datetime] = OrderedDict()

    def use(self, pre_auth: PreAuth, now: datetime) -> bool:
        """Mark ``pre_auth`` used; ``False`` when it already was."""
        while self._spent and next(iter(self._spent.values())) <= now:
            self._spent.popitem(last=False)
        key = hashlib.sha256(pre_auth.state.encode()).hexdigest()
        if key in self._spent:
            return False
        while len(self._spent) >= self._limit:
            self._spent.popitem(last=False)
        self._spent[key] = pre_auth.expires
        return True
