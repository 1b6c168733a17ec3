"""Personal data: validated, not just shaped; lookalikes and placeholders do not fire."""

from __future__ import annotations

import random

import pytest

from keyguard.guard import samples as pii
from keyguard.guard.engine import GuardEngine

ENGINE = GuardEngine()
RNG = random.Random(14)


def _found(text: str) -> list[tuple[str, str]]:
    return [(m.category, text[m.start : m.end]) for m in ENGINE.scan(text)]


# --- hostile and lookalike inputs first ----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Order #4539148803436467 shipped",  # Luhn-valid, named as an order number
        "pay with 4111 1111 1111 1111 (test card)",
        "4242-4242-4242-4242",
        "tracking number: 1Z999AA10123456784",
        "ISBN 978-3-16-148410-0 and ISBN-10 0-306-40615-2",
        "id 123e4567-e89b-12d3-a456-426614174000",
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "at 2024-01-15 10:30:45.123 and 15/01/2024 and 1718035200",
        "version 10.0.19041.1 / Chrome/120.0.6099.109 / v1.2.3.4",
        "firmware 14.6.0.1, iOS 17.1.2.3, kernel 5.15.0.105, ver. 20.5.17.30, fw 81.2.69.16",
        "the kernel is 5.15.0.105; upgraded the firmware to 14.6.0.1; version: 81.2.69.16",
        "updated the firmware from 14.6.0.1 to v2",
        "placeholder card 4111-xxxx-xxxx-1111, SSN 000-00-0000 or 666-12-3456",
        "mail user@example.com or a@b.test; git@github.com:org/repo.git; logo@2x.png",
        "npm i @scope/pkg@1.2.3 and @decorator",
        "servers 10.0.0.1, 192.168.1.10, 127.0.0.1, 172.16.0.5, 100.64.0.1, 198.51.100.7",
        "IPv6 ::1, fe80::1, 2001:db8::1 and 12:30:45",
        "QQ 12 34 56 C and QQ123456C",
        "call (555) 010-0123 or +1 202-555-0143 or 07700 900123",
        "build 20240115.3, invoice 3 4567 8901, port 8080, PID 12345678",
        "0000 0000 0000 0000 and 1234 5678 9012 3456",
        "Steuernummer later: 12345678901 appears without a valid check",
    ],
)
def test_lookalikes_are_not_personal_data(text: str) -> None:
    assert _found(text) == []


def test_numbers_in_very_long_digit_runs_finish_and_are_not_reported() -> None:
    assert _found("4" * 100_000) == []
    assert _found("1234 " * 20_000) == []
    assert _found("+" + "1 " * 50_000) == []
    assert _found("@" * 10_000 + "a@b.co" * 5) != []


def test_weak_identifiers_need_their_name() -> None:
    tax = pii.de_tax_id(RNG)
    assert _found(f"ref {tax}") == []
    assert _found(f"Steuer-ID: {tax}") == [("de_tax_id", tax)]
    number = pii.nl_bsn(RNG)
    assert _found(f"code {number}") == []
    assert _found(f"BSN {number}") == [("nl_bsn", number)]


# --- what is found -------------------------------------------------------------------------


@pytest.mark.parametrize("brand", ["visa", "mastercard", "mc2", "amex", "discover", "jcb"])
@pytest.mark.parametrize("sep", ["", " ", "-"])
def test_cards_of_each_issuer_and_grouping(brand: str, sep: str) -> None:
    number = pii.card(RNG, brand, sep)
    assert _found(f"my card is {number}, exp 09/28") == [("payment_card", number)]


def test_a_card_with_a_wrong_check_digit_or_issuer_is_not_a_card() -> None:
    number = pii.card(RNG, "visa", "")
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert _found(f"card {wrong}") == []
    assert _found(f"card 9{number[1:]}") == []


@pytest.mark.parametrize("country", ["DE", "FR", "NL", "ES", "IT", "GB", "BE", "AT", "CH"])
def test_ibans_pass_mod97(country: str) -> None:
    number = pii.iban_number(RNG, country)
    assert _found(f"IBAN: {number} — thanks") == [("iban", number)]
    broken = number[:-1] + str((int(number[-1]) + 1) % 10) if number[-1].isdigit() else number
    if broken != number:
        assert all(c != "iban" for c, _ in _found(f"IBAN: {broken}"))


@pytest.mark.parametrize(
    ("make", "category", "prefix"),
    [
        (pii.ssn, "us_ssn", "SSN "),
        (pii.es_dni, "es_dni", "DNI "),
        (pii.es_nie, "es_nie", "NIE "),
        (pii.it_fiscal_code, "it_fiscal_code", "codice fiscale "),
        (pii.gb_nino, "gb_nino", "NI number "),
        (pii.fr_nir, "fr_nir", "numéro de sécurité sociale "),
    ],
)
def test_national_ids(make: object, category: str, prefix: str) -> None:
    value = make(RNG)  # type: ignore[operator]
    assert _found(f"{prefix}{value}.") == [(category, value)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (
            "write to jane.o'neil+news@mail.contoso.co.uk today",
            "jane.o'neil+news@mail.contoso.co.uk",
        ),
        ('{"email": "ops-team@fabrikam.io"}', "ops-team@fabrikam.io"),
    ],
)
def test_emails(text: str, value: str) -> None:
    assert _found(text) == [("email", value)]


@pytest.mark.parametrize(
    "number",
    ["+44 7911 123456", "+49 30 901820", "0049 30 901820", "(415) 555-2671", "030 2946 1837",
     "+33 6 47 21 93 05", "+1-212-456-7890"],
)  # fmt: skip
def test_phones(number: str) -> None:
    assert _found(f"reach me at {number} tomorrow") == [("phone", number)]


def test_an_unformatted_national_number_needs_its_name() -> None:
    assert _found("ref 4155552671") == []
    assert _found("phone: 4155552671") == [("phone", "4155552671")]


def test_public_ip_addresses_only() -> None:
    text = "client 8.8.4.4 via 10.0.0.1 and 2606:4700:4700::1111"
    assert _found(text) == [("ip_address", "8.8.4.4"), ("ip_address", "2606:4700:4700::1111")]


@pytest.mark.parametrize(
    "text",
    [
        "download the firmware from 81.2.69.160 over tftp",
        "Flash the BIOS from 81.2.69.160",
        "pull the driver from 81.2.69.160 first",
    ],
)
def test_an_address_a_version_word_is_fetched_from_is_an_address(text: str) -> None:
    assert _found(text) == [("ip_address", "81.2.69.160")]


def test_lower_case_and_compact_ibans() -> None:
    number = pii.iban_number(RNG, "DE", spaced=False)
    assert _found(f"iban {number.lower()}") == [("iban", number.lower())]


@pytest.mark.parametrize("spaced", [True, False])
def test_ibans_with_letters_in_every_group(spaced: bool) -> None:
    number = "RO81HSRENU40UGZECUYZUP9E"  # fewer than six digits in a row anywhere
    text = " ".join(number[i : i + 4] for i in range(0, len(number), 4)) if spaced else number
    assert _found(f"Bank account: {text}.") == [("iban", text)]


def test_digit_groups_inside_an_iban_shaped_token_are_not_cards_or_phones() -> None:
    number = pii.iban_number(RNG, "DE")
    broken = number[:2] + str((int(number[2:4]) + 1) % 100).zfill(2) + number[4:]
    assert _found(f"IBAN {broken}") == []


def test_every_numeric_kind_is_found_far_into_a_long_text() -> None:
    card = pii.card(RNG, "visa", " ")
    text = "word " * 50_000 + f"card {card} " + "1.2 " * 1000
    assert _found(text) == [("payment_card", card)]


def test_phone_parsing_is_bounded_in_a_text_of_digit_groups() -> None:
    from keyguard.guard.pii_contact import MAX_PHONE_CANDIDATES

    groups = " ".join(f"0{i:03d} {i:04d}" for i in range(2_000))
    assert len(_found(groups)) <= MAX_PHONE_CANDIDATES


def test_an_address_at_the_end_of_a_sentence() -> None:
    assert _found("Mine is 2a00:8cc1:6dcb:d1d7:5939:7820:cee6:2eb8.") == [
        ("ip_address", "2a00:8cc1:6dcb:d1d7:5939:7820:cee6:2eb8")
    ]
    assert _found("Mine is 8.8.4.4.") == [("ip_address", "8.8.4.4")]


def test_a_documentation_iban_is_reported_it_passes_every_check() -> None:
    assert _found("IBAN DE89 3704 0044 0532 0130 00") == [("iban", "DE89 3704 0044 0532 0130 00")]


def test_an_email_at_the_very_start_of_a_text() -> None:
    assert _found("ann.lee@contoso.com wrote") == [("email", "ann.lee@contoso.com")]


def test_a_text_of_many_values_keeps_max_matches_and_finishes() -> None:
    text = "mail a.b@contoso.com now " * 40_000
    found = ENGINE.scan(text)
    assert len(found) == 1_000 and {m.category for m in found} == {"email"}
    assert [m.start for m in found] == sorted(m.start for m in found)
