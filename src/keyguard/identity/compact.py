"""A JWS in compact serialisation (``header.payload.signature``), parsed strictly.

Keyguard parses a token itself, once, before anything reads a value from it, so no library's
lenient JSON decides what a hostile token means:

* at most :data:`MAX_TOKEN_LENGTH` characters, exactly three parts of unpadded, canonical
  base64url (no ``=``, no other alphabet, no stray bits: one token has one spelling);
* the header and the payload are UTF-8 JSON **objects** (no byte order mark), parsed by
  orjson: no ``NaN``/``Infinity``, no lone surrogates, numbers that do not overflow a double;
  nested at most :data:`MAX_DEPTH` levels; no member name twice in one object (RFC 7515
  allows refusing duplicates; a token with two ``alg`` or two ``aud`` is refused);
* integers beyond 64 bits arrive as floats (orjson), which every time claim refuses.

Any failure is :class:`MalformedToken`; the caller turns it into a 401 ``token_malformed``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Compact", "MalformedToken", "MAX_DEPTH", "MAX_TOKEN_LENGTH", "parse_compact"]

MAX_TOKEN_LENGTH = 8192  # the proxy's credential limit; Entra tokens are 1-3 KiB
MAX_DEPTH = 16  # objects and arrays inside one another (Entra's claims go 2 deep)
_PART = re.compile(r"[A-Za-z0-9_-]*")


class MalformedToken(ValueError):
    """Not a well-formed compact JWS; the message (for tests) says what, never the token."""


@dataclass(frozen=True, slots=True)
class Compact:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes  # ASCII of ``header.payload``, what the signature covers
    signature: bytes


def b64url_decode(part: str) -> bytes:
    """Unpadded, canonical base64url: ``MalformedToken`` for anything else."""
    if not _PART.fullmatch(part) or len(part) % 4 == 1:
        raise MalformedToken("not base64url")
    try:
        data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - excluded by the checks above
        raise MalformedToken("not base64url") from None
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != part:
        raise MalformedToken("not canonical base64url")  # stray bits in the last character
    return data


def _depth(value: Any, limit: int) -> None:
    if limit < 0:
        raise MalformedToken("nested too deep")
    if isinstance(value, dict):
        for item in value.values():
            _depth(item, limit - 1)
    elif isinstance(value, list):
        for item in value:
            _depth(item, limit - 1)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise MalformedToken("a member appears twice")
    return dict(pairs)


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """A strict JSON object (see the module docstring)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise MalformedToken(f"the {what} is not strict JSON") from None
    if not isinstance(value, dict):
        raise MalformedToken(f"the {what} is not a JSON object")
    _depth(value, MAX_DEPTH - 1)  # the object itself is the first level
    # orjson keeps the last of two equal names; the standard parser tells them apart. Only
    # text orjson accepted, nested at most MAX_DEPTH, gets here: it parses the same.
    json.loads(data, object_pairs_hook=_no_duplicates)
    return value


def parse_compact(token: str) -> Compact:
    if len(token) > MAX_TOKEN_LENGTH:
        raise MalformedToken("too long")
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise MalformedToken("not three parts")
    head, body, signature = parts
    header = json_object(b64url_decode(head), "header")
    claims = json_object(b64url_decode(body), "payload")
    return Compact(header, claims, f"{head}.{body}".encode("ascii"), b64url_decode(signature))
