"""What the detectors read: every script's decimal digits folded to ASCII, offsets kept."""

from __future__ import annotations

import random
import sys
import unicodedata

import pytest

from keyguard.guard import samples as pii
from keyguard.guard.engine import GuardEngine
from keyguard.guard.normalize import DIGITS, prepare


def test_the_digit_table_is_the_interpreters_own() -> None:
    """Every decimal digit of the running Python's Unicode tables but ASCII's, and no other
    character (a newer Unicode adds scripts: the table must be extended, this says so)."""
    table = {
        cp: 0x30 + unicodedata.digit(chr(cp))
        for cp in range(0x80, sys.maxunicode + 1)
        if chr(cp).isdecimal()
    }
    assert DIGITS == table


def test_folded_digits_keep_every_offset() -> None:
    text = "a ٤٢ b ४२ c 𝟒𝟐 d 42"
    prepared = prepare(text)
    assert prepared.text == "a 42 b 42 c 42 d 42" and prepared.index is None


@pytest.mark.parametrize(
    "number",
    ["+٤٤ ٧٩١١ ١٢٣٤٥٦", "+४४ ७९११ १२३४५६", "+৪৪ ৭৯১১ ১২৩৪৫৬", "+44 ٧٩١١ 123456"],
)  # Arabic-Indic, Devanagari, Bengali, mixed
def test_personal_data_in_the_digits_of_any_script_is_found(number: str) -> None:
    text = f"reach me at {number} tomorrow"
    found = [(m.category, text[m.start : m.end]) for m in GuardEngine().scan(text)]
    assert found == [("phone", number)]


def test_a_card_in_arabic_indic_digits_is_a_card_and_a_wrong_one_is_not() -> None:
    card = pii.card(random.Random(14), "visa", "")
    arabic = card.translate({0x30 + i: 0x660 + i for i in range(10)})
    engine = GuardEngine()
    assert [m.category for m in engine.scan(f"card {arabic} exp 09/28")] == ["payment_card"]
    wrong = arabic[:-1] + chr(0x660 + (int(card[-1]) + 1) % 10)  # the check digit changed
    assert engine.scan(f"card {wrong} exp 09/28") == []
