"""A JWK Set read entry by entry: hostile entries are skipped with a reason, the good kept."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from keyguard.identity.jwk import MAX_KEYS, read_key_set
from tests.support.issuer import b64url

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
GOOD: dict[str, Any] = {
    **RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True),
    "kid": "good",
    "use": "sig",
}
BOTH = ["RS256", "ES256"]


def ec_entry(curve: ec.EllipticCurve, kid: str, **fields: Any) -> dict[str, Any]:
    key = ec.generate_private_key(curve)
    return {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, **fields}


def uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def test_a_good_key_verifies() -> None:
    found = read_key_set([GOOD], ["RS256"])
    assert found.problems == [] and set(found.keys) == {"good"}
    key = found.keys["good"]
    message = b"head.body"
    signature = RSA_KEY.sign(message, padding.PKCS1v15(), hashes.SHA256())
    assert key.algorithm == "RS256" and key.verify(message, signature)
    assert not key.verify(b"head.other", signature)
    assert not key.verify(message, signature[:-1])
    assert not key.verify(message, b"")


def test_bad_entries_are_skipped_the_good_kept() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    entries: list[Any] = [
        {**GOOD, "kid": "alg-list", "alg": ["RS256"]},
        {**GOOD, "kid": "use-list", "use": ["sig"]},
        {**GOOD, "kid": "n-number", "n": 5},
        {**GOOD, "kid": "n-garbage", "n": "!!"},
        {**GOOD, "kid": "e-even", "e": uint(4)},
        {**GOOD, "kid": "kty-list", "kty": ["RSA"]},
        {**GOOD, "kid": "ops-string", "key_ops": "verify"},
        {**GOOD, "kid": "private", "d": GOOD["n"]},
        {**GOOD, "kid": "rsa-as-es256", "alg": "ES256"},
        {**RSAAlgorithm.to_jwk(weak.public_key(), as_dict=True), "kid": "weak-1024"},
        {"kty": "RSA", "kid": "weak-512", "n": uint(2**511 + 12345), "e": "AQAB"},
        {"kty": "RSA", "kid": "huge", "n": uint(2**16400 + 1), "e": "AQAB"},
        {**GOOD, "kid": "big-exponent", "e": uint(2**64 + 1)},
        {"kid": "no-kty", "n": GOOD["n"], "e": GOOD["e"]},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        ec_entry(ec.SECP256K1(), "k1"),
        ec_entry(ec.SECP256R1(), "p256-as-es384", alg="ES384"),
        {**ec_entry(ec.SECP256R1(), "off-curve"), "y": ec_entry(ec.SECP256R1(), "z")["y"]},
        {**ec_entry(ec.SECP256R1(), "short-x"), "x": "AAAA"},
        {"kid": ["list"]},
        {"kty": "RSA"},
        "text",
        None,
        GOOD,
    ]
    found = read_key_set(entries, BOTH)
    assert set(found.keys) == {"good"}
    text = " | ".join(found.problems)
    for kid in (
        "alg-list",
        "use-list",
        "n-number",
        "n-garbage",
        "e-even",
        "kty-list",
        "ops-string",
        "private",
        "rsa-as-es256",
        "weak-1024",
        "weak-512",
        "huge",
        "big-exponent",
        "no-kty",
        "hmac",
        "k1",
        "p256-as-es384",
        "off-curve",
        "short-x",
    ):
        assert f"kid '{kid}'" in text, kid
    assert "1024 bits, under 2048" in text and "512 bits" in text
    assert "'secp256k1' is not P-256, P-384 or P-521" in text
    assert "entry 19" in text and "entry 21" in text  # no usable kid: named by position
    assert len(found.problems) == len(entries) - 1


def test_keys_for_other_algorithms_or_uses_are_left_out_quietly() -> None:
    entries = [
        {**GOOD, "kid": "enc", "use": "enc"},
        {**GOOD, "kid": "wrap", "key_ops": ["wrapKey"]},
        {**GOOD, "kid": "rs384", "alg": "RS384"},
        ec_entry(ec.SECP384R1(), "p384"),
        ec_entry(ec.SECP256R1(), "p256", alg="ES256", use="sig", key_ops=["verify"]),
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AAAA"},
    ]
    found = read_key_set(entries, ["RS256"])
    assert found.keys == {} and found.problems == []
    found = read_key_set(entries, BOTH)
    assert set(found.keys) == {"p256"} and found.keys["p256"].algorithm == "ES256"


def test_a_kid_served_twice_is_not_used() -> None:
    other = ec_entry(ec.SECP256R1(), "good")
    found = read_key_set([GOOD, other, {**GOOD, "kid": "kept"}], BOTH)
    assert set(found.keys) == {"kept"}
    assert "appears twice" in found.problems[0]


def test_the_number_of_entries_is_bounded() -> None:
    entries = [{**GOOD, "kid": f"k{i}"} for i in range(MAX_KEYS + 5)]
    found = read_key_set(entries, ["RS256"])
    assert len(found.keys) == MAX_KEYS
    assert found.problems == [f"5 entries after the first {MAX_KEYS}"]
