"""The admin token format: ``kga_`` + a 12-character public id + a 32-character secret + a
6-character CRC32 checksum, base62 (pure).

The scheme of Keyguard keys (:mod:`.format`) with its own prefix, so that neither can be used
in place of the other and scanners and the audit's redaction tell them apart. What a token may
do, and how it is stored, is the admin port's (:mod:`keyguard.admin.tokens`).
"""

from __future__ import annotations

import hmac
import re
import secrets
import zlib

__all__ = ["TOKEN_PREFIX", "TOKEN_LENGTH", "TOKEN_PATTERN", "generate_token", "parse_token"]

TOKEN_PREFIX = "kga_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID, _SECRET, _CHECK = 12, 32, 6
TOKEN_LENGTH = len(TOKEN_PREFIX) + _ID + _SECRET + _CHECK
#: a token's shape in text (the checksum is checked by :func:`parse_token`)
TOKEN_PATTERN = re.compile(
    rf"(?<![0-9A-Za-z_])kga_[0-9A-Za-z]{{{_ID + _SECRET + _CHECK}}}(?![0-9A-Za-z])"
)


def _checksum(body: str) -> str:
    value, out = zlib.crc32(body.encode("ascii")), []
    while value:
        value, rem = divmod(value, 62)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out)).rjust(_CHECK, "0")


def generate_token() -> tuple[str, str]:
    """A fresh ``(token_id, token)``."""
    token_id = "".join(secrets.choice(_ALPHABET) for _ in range(_ID))
    body = TOKEN_PREFIX + token_id + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET))
    return token_id, body + _checksum(body)


def parse_token(value: str) -> str | None:
    """The token id of a well-formed admin token (length, alphabet, checksum), else ``None``."""
    if len(value) != TOKEN_LENGTH or not value.startswith(TOKEN_PREFIX):
        return None
    rest = value[len(TOKEN_PREFIX) :]
    if not rest.isascii() or not rest.isalnum():
        return None
    if not hmac.compare_digest(_checksum(value[:-_CHECK]), value[-_CHECK:]):
        return None
    return rest[:_ID]
