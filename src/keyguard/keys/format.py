"""The Keyguard key format: identifiable, checksummed, parsed without any lookup.

A key is 54 characters::

    kgk_ 4fT9qZ1mB7xK 3N8...(32 chars)...Qw 0a1B2c
    ^    ^            ^                     ^
    |    key id (12)  secret (32, ~190 bits) checksum (6)
    prefix

All parts after the prefix are base62. The checksum is CRC32 of everything before it, in
base62, zero-padded to 6 characters (the scheme GitHub uses for its tokens), so a scanner can
tell a real Keyguard key from a look-alike and the gateway rejects a mistyped key before it
touches the store. The key id is public (it appears in lists, logs and audit records); the
secret never leaves the process that generated it except in the one response that shows it.
"""

from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import dataclass

__all__ = [
    "PREFIX",
    "KEY_LENGTH",
    "KEY_PATTERN",
    "ParsedKey",
    "generate_key",
    "generate_key_id",
    "parse_key",
]

PREFIX = "kgk_"
ID_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(PREFIX) + ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH  # 54

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}

# For scanners: a candidate Keyguard key anywhere in text (checksum still to be verified).
KEY_PATTERN = re.compile(r"(?<![A-Za-z0-9_])kgk_[0-9A-Za-z]{50}(?![A-Za-z0-9])")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A syntactically valid key: ``key_id`` is public, ``full`` is the whole secret string."""

    key_id: str
    full: str


def _base62(value: int, width: int) -> str:
    out = []
    while value:
        value, rem = divmod(value, 62)
        out.append(ALPHABET[rem])
    return "".join(reversed(out)).rjust(width, "0")


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def generate_key_id() -> str:
    """A fresh public key id (12 base62 characters)."""
    return _random_base62(ID_LENGTH)


def generate_key(key_id: str | None = None) -> ParsedKey:
    """A fresh key; pass ``key_id`` to mint a new secret under an existing id (rotation)."""
    kid = key_id if key_id is not None else generate_key_id()
    if len(kid) != ID_LENGTH or any(c not in _INDEX for c in kid):
        raise ValueError("key id must be 12 base62 characters")
    body = PREFIX + kid + _random_base62(SECRET_LENGTH)
    return ParsedKey(key_id=kid, full=body + _checksum(body))


def parse_key(value: str) -> ParsedKey | None:
    """Return the parsed key, or ``None`` when ``value`` is not a well-formed Keyguard key.

    Checks the length, the alphabet and the checksum; does no lookup and no secret comparison.
    """
    if len(value) != KEY_LENGTH or not value.startswith(PREFIX):
        return None
    rest = value[len(PREFIX) :]
    if not rest.isascii() or not rest.isalnum():
        return None
    body, check = value[:-CHECKSUM_LENGTH], value[-CHECKSUM_LENGTH:]
    if _checksum(body) != check:
        return None
    return ParsedKey(key_id=rest[:ID_LENGTH], full=value)
