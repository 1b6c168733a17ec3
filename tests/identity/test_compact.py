"""The compact serialisation parsed strictly: one spelling per token, strict JSON objects."""

from __future__ import annotations

import pytest

from keyguard.identity.compact import (
    MAX_DEPTH,
    MAX_TOKEN_LENGTH,
    MalformedToken,
    b64url_decode,
    parse_compact,
)
from tests.support.issuer import b64url

HEAD = b64url(b'{"alg":"RS256","kid":"k"}')
BODY = b64url(b'{"exp":1}')


def test_a_well_formed_token() -> None:
    compact = parse_compact(f"{HEAD}.{BODY}.{b64url(b'sig')}")
    assert compact.header == {"alg": "RS256", "kid": "k"} and compact.claims == {"exp": 1}
    assert compact.signing_input == f"{HEAD}.{BODY}".encode() and compact.signature == b"sig"
    assert parse_compact(f"{HEAD}.{BODY}.").signature == b""
    assert parse_compact(f"{HEAD}.{BODY}.c2k").signature == b"si"


@pytest.mark.parametrize(
    "token",
    [
        f"{HEAD}.{BODY}",
        f"{HEAD}.{BODY}.c2ln.c2ln",
        f".{BODY}.c2ln",
        f"{HEAD}..c2ln",
        f"{HEAD}=.{BODY}.c2ln",  # padding
        f"{HEAD}.{BODY}.c2ln+",  # base64, not base64url
        f"{HEAD}.{BODY}.c2l",  # stray bits: another spelling of "c2k" ("si")
        f"{HEAD}.{BODY}.A",  # a length no base64 has
        f"{HEAD}.{BODY}.c2ln\n",
        f"{HEAD} .{BODY}.c2ln",
        f"{HEAD}.{BODY}.{'A' * MAX_TOKEN_LENGTH}",
    ],
)
def test_not_compact(token: str) -> None:
    with pytest.raises(MalformedToken):
        parse_compact(token)


@pytest.mark.parametrize(
    "json",
    [
        b"[]",
        b"null",
        b'"text"',
        b"{",
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":-Infinity}',
        b'{"a":1e400}',
        b'{"a":' + b"9" * 400 + b"}",
        b'{"a":"\\ud800"}',
        b"\xef\xbb\xbf{}",
        b'{"a":"\xff"}',
        b'{"a":1,"a":1}',
        b'{"a":{"b":1,"b":2}}',
        b'{"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",
        b'{"a":1} x',
    ],
)
def test_not_strict_json_objects(json: bytes) -> None:
    with pytest.raises(MalformedToken):
        parse_compact(f"{b64url(json)}.{BODY}.")
    with pytest.raises(MalformedToken):
        parse_compact(f"{HEAD}.{b64url(json)}.")


def test_nesting_up_to_the_limit_and_big_integers_as_floats() -> None:
    nested = b'{"a":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert parse_compact(f"{HEAD}.{b64url(nested)}.").claims["a"]
    huge = b64url(b'{"exp":18446744073709551616}')
    big = parse_compact(f"{HEAD}.{huge}.").claims["exp"]
    assert isinstance(big, float)  # and every time claim refuses a float


def test_b64url_decode() -> None:
    assert b64url_decode("") == b""
    assert b64url_decode("-_8") == b"\xfb\xff"
