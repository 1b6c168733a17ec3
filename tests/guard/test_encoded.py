"""Personal data written percent-encoded is found over its encoded span; what reads the same
encoded or not, or is no personal data once decoded, is not reported twice or at all."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from keyguard.guard import samples
from keyguard.guard.encoded import REACH, _runs, percent_encoded_matches
from keyguard.guard.engine import GuardEngine
from keyguard.guard.personal import PersonalDetectors

ENGINE = GuardEngine()
RNG = random.Random(7)


def _found(text: str) -> list[tuple[str, str]]:
    return [(m.category, text[m.start : m.end]) for m in ENGINE.scan(text)]


@pytest.mark.parametrize(
    ("text", "value", "category"),
    [
        ("GET /signup?email={v}&ref=mail", "anna.berger%40contoso.com", "email"),
        ("GET /api/users?phone={v} HTTP/1.1", "%2B4915123456789", "phone"),
        ("q=call+me+on+{v}&lang=en", "%2B44+7911+123456", "phone"),
        ('{{"iban": "{v}"}}', "DE89%203704%200044%200532%200130%2000", "iban"),
        ("ip={v}", "2a00%3Ad07a%3A265d%3Aaf84%3A8163%3A204c%3A152e%3Ac4a8", "ip_address"),
    ],
)
def test_percent_encoded_personal_data_is_found_over_its_encoded_span(
    text: str, value: str, category: str
) -> None:
    assert _found(text.format(v=value)) == [(category, value)]


def test_a_card_encoded_in_a_form_body() -> None:
    card = samples.card(RNG, "visa", " ")
    encoded = card.replace(" ", "%20")
    assert _found(f"amount=12.00&card={encoded}&cvc=123") == [("payment_card", encoded)]


@pytest.mark.parametrize(
    "text",
    [
        "mail=user%40example.com",  # a documentation domain, decoded or not
        "path=%2Fhome%2Fuser%2F2026%2F11%2F30%2Freport.txt",  # no escape that hides a value
        "name=Invoice%20INV-2026-000123%20final.pdf",
        "%" * 50 + "%4" + "%zz%20%",
        "sig=abc%2Bdef%3D&sv=2022-11-02",
    ],
)
def test_encoded_text_without_personal_data(text: str) -> None:
    assert _found(text) == []


def test_a_value_readable_as_written_is_reported_once() -> None:
    email = samples.email(RNG)
    text = f"to: {email}, subject=Hello%20there"
    assert _found(text) == [("email", email)]
    assert list(percent_encoded_matches(text, PersonalDetectors(["US"]))) == []


def test_runs_are_bounded_and_each_character_read_once() -> None:
    # a hostile line of escapes: one run, read once
    text = "%20" * 100_000
    assert list(percent_encoded_matches(text, PersonalDetectors(["US"]))) == []
    far = "x" * (2 * REACH) + "%20" + "7" * (2 * REACH)
    runs = list(_runs(far))
    assert runs == [(REACH * 2 - REACH, REACH * 2 + 3 + REACH)]


@pytest.mark.parametrize("pad", range(0, 3 * 24, 3))
def test_a_value_where_a_run_reaches_its_end_is_read_whole(pad: int) -> None:
    # a long encoded comment: wherever its first run is cut, the address is found whole
    words = "I%20would%20like%20to%20know%20more%20about%20your%20product%20please%20" * 3
    value = "anna.berger%40contoso.com"
    text = f"comment={words}{'x' * pad}%20{value}&ok=1"
    assert _found(text) == [("email", value)]


def test_runs_ended_at_their_reach_are_read_at_most_twice() -> None:
    text = ("%20" + "x" * (REACH + 44)) * 100
    runs = list(_runs(text))
    assert len(runs) == 100
    assert all(lo >= prev_hi - REACH for (_, prev_hi), (lo, _) in pairwise(runs))
    assert sum(hi - lo for lo, hi in runs) <= 2 * len(text)
