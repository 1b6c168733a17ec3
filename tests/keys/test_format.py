"""The Keyguard key format: identifiable, checksummed, parsed without lookups."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keyguard.keys.format import KEY_LENGTH, KEY_PATTERN, generate_key, parse_key


def test_generated_keys_parse_back() -> None:
    key = generate_key()
    assert len(key.full) == KEY_LENGTH == 54
    assert key.full.startswith("kgk_") and key.full[4:16] == key.key_id
    assert parse_key(key.full) == key
    assert KEY_PATTERN.fullmatch(key.full)


def test_rotation_keeps_the_id_and_changes_the_secret() -> None:
    first = generate_key()
    second = generate_key(first.key_id)
    assert second.key_id == first.key_id and second.full != first.full


@given(st.integers(min_value=4, max_value=KEY_LENGTH - 1), st.sampled_from("0aZ9"))
def test_any_single_character_change_is_caught(position: int, replacement: str) -> None:
    key = generate_key().full
    if key[position] == replacement:
        return
    mutated = key[:position] + replacement + key[position + 1 :]
    assert parse_key(mutated) is None


def test_wrong_shapes_are_refused() -> None:
    key = generate_key().full
    assert parse_key(key[:-1]) is None
    assert parse_key(key + "0") is None
    assert parse_key("sk-" + key[3:]) is None
    assert parse_key(key[:20] + "-" + key[21:]) is None
    assert parse_key(key[:20] + "é" + key[21:]) is None
