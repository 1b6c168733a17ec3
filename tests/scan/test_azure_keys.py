"""Azure AI services key formats: Marvin32 vectors, generation, validation, mutations."""

from __future__ import annotations

import base64
import random
import re
import string
from datetime import UTC, datetime

import pytest

from keyguard.azure_keys import (
    CHECKSUM_ENCODINGS,
    CHECKSUM_SEED,
    IDENTIFIABLE_KEY_PATTERN,
    LEGACY_KEY_PATTERN,
    SERVICES,
    build_identifiable_key,
    checksum32,
    encode_checksum,
    generate_identifiable_key,
    generate_legacy_key,
    marvin32,
    validate_identifiable_key,
)

SEED0 = 0x004FB61A001BDBCC
SEED1 = 0x804FB61A001BDBCC
SEED2 = 0x804FB61A801BDBCC

# microsoft/security-utilities src/Tests.Microsoft.Security.Utilities.Core/MarvinTests.cs and
# MarvinShared.cs (SymCrypt's own two vectors plus the cross-check table).
MARVIN_VECTORS = [
    (0xD53CD9CECD0893B7, b"abc", 0x22C74339492769BF),
    (0xDDDDEEEEFFFF000, b"abcdefghijklmnopqrstuvwxyz", 0xA128EB7E7260ACA2),
    (SEED0, b"", 0x30ED35C100CD3C7D),
    (SEED0, b"\xaf", 0x48E73FC77D75DDC1),
    (SEED0, b"\xe7\x0f", 0xB5F6E1FC485DBFF8),
    (SEED0, b"\x37\xf4\x95", 0xF0B07C789B8CF7E8),
    (SEED0, b"\x86\x42\xdc\x59", 0x7008F2E87E9CF556),
    (SEED0, b"\x15\x3f\xb7\x98\x26", 0xE6C08C6DA2AFA997),
    (SEED0, b"\x09\x32\xe6\x24\x6c\x47", 0x6F04BF1A5EA24060),
    (SEED0, b"\xab\x42\x7e\xa8\xd1\x0f\xc7", 0xE11847E4F0678C41),
    (SEED1, b"", 0x10A9D5D3996FD65D),
    (SEED1, b"\xaf", 0x68201F91960EBF91),
    (SEED1, b"\xe7\x0f", 0x64B581631F6AB378),
    (SEED1, b"\x37\xf4\x95", 0xE1F2DFA6E5131408),
    (SEED1, b"\x86\x42\xdc\x59", 0x36289D9654FB49F6),
    (SEED1, b"\x15\x3f\xb7\x98\x26", 0x0A06114B13464DBD),
    (SEED1, b"\x09\x32\xe6\x24\x6c\x47", 0xD6DD5E40AD1BC2ED),
    (SEED1, b"\xab\x42\x7e\xa8\xd1\x0f\xc7", 0xE203987DBA252FB3),
    (SEED2, b"\x00", 0xA37FB0DA2ECAE06C),
    (SEED2, b"\xff", 0xFECEF370701AE054),
    (SEED2, b"\x00\xff", 0xA638E75700048880),
    (SEED2, b"\xff\x00", 0xBDFB46D969730E2A),
    (SEED2, b"\xff\x00\xff", 0x9D8577C0FE0D30BF),
    (SEED2, b"\x00\xff\x00", 0x4F9FBDDE15099497),
    (SEED2, b"\x00\xff\x00\xff", 0x24EAA279D9A529CA),
    (SEED2, b"\xff\x00\xff\x00", 0xD3BEC7726B057943),
    (SEED2, b"\xff\x00\xff\x00\xff", 0x920B62BBCA3E0B72),
    (SEED2, b"\x00\xff\x00\xff\x00", 0x1D7DDF9DFDF3C1BF),
    (SEED2, b"\x00\xff\x00\xff\x00\xff", 0xEC21276A17E821A5),
    (SEED2, b"\xff\x00\xff\x00\xff\x00", 0x6911A53CA8C12254),
    (SEED2, b"\xff\x00\xff\x00\xff\x00\xff", 0xFDFD187B1D3CE784),
    (SEED2, b"\x00\xff\x00\xff\x00\xff\x00", 0x71876F2EFB1B0EE8),
]

ALNUM = string.ascii_letters + string.digits


@pytest.mark.parametrize(("seed", "data", "expected"), MARVIN_VECTORS)
def test_marvin32_matches_symcrypt_vectors(seed: int, data: bytes, expected: int) -> None:
    assert marvin32(seed, data) == expected


def test_checksum_seed_is_default0_reversed_little_endian() -> None:
    assert CHECKSUM_SEED == int.from_bytes(bytes(reversed(b"Default0")), "little")


def test_checksum32_folds_high_and_low_words() -> None:
    h = marvin32(CHECKSUM_SEED, b"abc")
    assert checksum32(b"abc") == (((h >> 32) ^ h) & 0xFFFFFFFF).to_bytes(4, "little")


def test_base62_checksum_keeps_one_zero_per_leading_zero_byte() -> None:
    assert encode_checksum(b"\x00\x00\x00\x01", "base62") == "0001"
    assert encode_checksum(b"\x00\x00\x00\x00", "base62") == "0000"
    # 0xFFFFFFFF = 4294967295 = "4gfFC3" in base62.
    assert encode_checksum(b"\xff\xff\xff\xff", "base62") == "4gfF"
    with pytest.raises(ValueError):
        encode_checksum(b"\0\0\0\0", "hex")


def _fixed_keys(encoding: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    keys: list[str] = []
    while len(keys) < count:
        key = build_identifiable_key(
            "".join(rng.choice(ALNUM) for _ in range(52)),
            rng.choice(["openai", "ai_services", "cognitive_services"]),
            2025,
            rng.randint(1, 12),
            "AC" + "".join(rng.choice(ALNUM) for _ in range(5)) + "XJ3w3",
            encoding,
        )
        if key is not None:
            keys.append(key)
    return keys


@pytest.mark.parametrize("encoding", CHECKSUM_ENCODINGS)
@pytest.mark.parametrize("service", ["openai", "ai_services", "cognitive_services", "face"])
def test_generated_keys_validate(encoding: str, service: str) -> None:
    now = datetime(2025, 3, 14, tzinfo=UTC)
    for _ in range(20):
        key = generate_identifiable_key(service, now=now, checksum_encoding=encoding)
        assert len(key) == 84 and key.isalnum()
        assert key[52:60] == "JQQJ99BC" and key[72:80] == "AAA" + SERVICES[service].code + "ACOG"
        info = validate_identifiable_key(key)
        assert info is not None
        assert (info.service, info.year, info.month) == (service, 2025, 3)
        assert info.checksum_encoding == encoding
        assert IDENTIFIABLE_KEY_PATTERN.fullmatch(key)


def test_service_codes_follow_the_enum() -> None:
    assert SERVICES["ai_services"].code == "A"
    assert SERVICES["openai"].code == "B"
    assert SERVICES["cognitive_services"].code == "E"
    assert SERVICES["speech_services"].code == "Y"
    assert SERVICES["text_translation"].code == "b"
    assert SERVICES["bing_spell_check_v7"].code == "o"
    assert len(SERVICES) == 41


@pytest.mark.parametrize("encoding", CHECKSUM_ENCODINGS)
def test_every_one_char_mutation_fails(encoding: str) -> None:
    for key in _fixed_keys(encoding, 3, seed=1234):
        assert validate_identifiable_key(key) is not None
        for i, original in enumerate(key):
            for c in ALNUM:
                if c != original:
                    mutated = key[:i] + c + key[i + 1 :]
                    assert validate_identifiable_key(mutated) is None, (i, c)


def test_both_encodings_validate_the_same_body() -> None:
    key64 = _fixed_keys("base64", 1, seed=7)[0]
    body = key64[:80]
    check = checksum32(base64.b64decode(body))
    key62 = body + encode_checksum(check, "base62")
    assert validate_identifiable_key(key64) is not None
    info = validate_identifiable_key(key62)
    assert info is not None and info.checksum_encoding == "base62"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a" * 84,
        "x" * 52 + "JQQJ99BM" + "A" * 12 + "AAABACOG" + "AAAA",  # month M is out of range
    ],
)
def test_malformed_keys_are_rejected(bad: str) -> None:
    assert validate_identifiable_key(bad) is None


def test_wrong_length_and_alphabet_rejected() -> None:
    key = _fixed_keys("base64", 1, seed=3)[0]
    assert validate_identifiable_key(key + "A") is None
    assert validate_identifiable_key(key[:-1]) is None
    assert validate_identifiable_key(key[:10] + "+" + key[11:]) is None
    assert validate_identifiable_key(key.replace("ACOG", "acog")) is None


def test_build_rejects_bad_fields() -> None:
    with pytest.raises(ValueError):
        build_identifiable_key("a" * 51, "openai", 2025, 1, "A" * 12, "base64")
    with pytest.raises(ValueError):
        build_identifiable_key("a" * 52, "nope", 2025, 1, "A" * 12, "base64")
    with pytest.raises(ValueError):
        build_identifiable_key("a" * 52, "openai", 2023, 1, "A" * 12, "base64")
    with pytest.raises(ValueError):
        build_identifiable_key("a" * 52, "openai", 2025, 1, "A+" * 6, "base64")
    with pytest.raises(ValueError):
        generate_identifiable_key(checksum_encoding="hex")


def test_regex_finds_key_in_text_and_respects_boundaries() -> None:
    key = generate_identifiable_key()
    assert IDENTIFIABLE_KEY_PATTERN.search(f'api_key = "{key}"')
    assert not IDENTIFIABLE_KEY_PATTERN.search(f"x{key}")
    assert not IDENTIFIABLE_KEY_PATTERN.search(f"{key}0")


def test_legacy_key_shape() -> None:
    keys = {generate_legacy_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert re.fullmatch(r"[0-9a-f]{32}", key)
        assert LEGACY_KEY_PATTERN.fullmatch(key)
