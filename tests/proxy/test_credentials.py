"""Credential extraction: where the key may come from, and what is refused before any lookup."""

from __future__ import annotations

import pytest

from keyguard.errors import AuthenticationFailed
from keyguard.identity.credentials import extract_credential
from keyguard.keys.format import generate_key


def test_key_from_api_key_header() -> None:
    key = generate_key()
    cred = extract_credential(key.full, None)
    assert cred.kind == "keyguard" and cred.key == key


def test_key_from_bearer() -> None:
    key = generate_key()
    assert extract_credential(None, f"Bearer {key.full}").key == key
    assert extract_credential(None, f"bearer   {key.full} ").key == key


def test_both_headers_must_agree() -> None:
    key, other = generate_key(), generate_key()
    assert extract_credential(key.full, f"Bearer {key.full}").key == key
    with pytest.raises(AuthenticationFailed) as info:
        extract_credential(key.full, f"Bearer {other.full}")
    assert info.value.reason == "conflicting_credentials"


@pytest.mark.parametrize(
    ("api_key", "authorization", "reason"),
    [
        (None, None, "missing_credential"),
        ("", None, "missing_credential"),
        (None, "Basic abc", "bad_authorization_header"),
        (None, "Bearer", "bad_authorization_header"),
        ("kgk_short", None, "malformed_key"),
        ("x" * 9000, None, "oversized_credential"),
        ("not-a-key", None, "unrecognised_credential"),
    ],
)
def test_unusable_credentials(api_key: str | None, authorization: str | None, reason: str) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        extract_credential(api_key, authorization)
    assert info.value.reason == reason
    assert info.value.status == 401


def test_wrong_checksum_is_malformed() -> None:
    full = generate_key().full
    flipped = full[:-1] + ("A" if full[-1] != "A" else "B")
    with pytest.raises(AuthenticationFailed) as info:
        extract_credential(flipped, None)
    assert info.value.reason == "malformed_key"
    assert flipped not in info.value.message


def test_jwt_and_azure_keys_are_classified() -> None:
    assert extract_credential(None, "Bearer eyJhbGciOi.eyJzdWIiOi.c2ln").kind == "jwt"
    assert extract_credential("0123456789abcdef0123456789abcdef", None).kind == "azure_key"
    identifiable = "A" * 52 + "JQQJ99" + "BL" + "A" * 12 + "AAAB" + "ACOG" + "abcd"
    assert extract_credential(identifiable, None).kind == "azure_key"
