"""Forms real prompts carry values in that a first corpus missed: addresses next to a colon,
national phone numbers in local writing, numbers named in other languages, endpoints
assigned to a password-like name."""

from __future__ import annotations

import base64
import random

import pytest

from keyguard.guard import samples as pii
from keyguard.guard.engine import GuardEngine
from keyguard.scan import testkeys

ENGINE = GuardEngine()
RNG = random.Random(21)


def _found(text: str) -> list[tuple[str, str]]:
    return [(m.category, text[m.start : m.end]) for m in ENGINE.scan(text)]


@pytest.mark.parametrize(
    "template",
    [
        "Dispute from {}:",  # a colon ends the sentence
        "Dispute from {}: card charged 3x",
        '<a href="mailto:{}?subject=Quote">Sales</a>',
        "BEGIN:VCARD\nEMAIL:{}\nEND:VCARD",
        "curl -u {}:ATATT3xFfGF0T2pGZmNnYlE1bXpLZ0 https://fabrikam.atlassian.net/rest/api/3",
    ],
)
def test_an_address_next_to_a_colon_is_still_an_address(template: str) -> None:
    address = "olga.nowak@fabrikam.io"
    assert ("email", address) in _found(template.format(address))


@pytest.mark.parametrize(
    "template",
    [
        "git@github.com:contoso/billing.git",
        "git clone git@ssh.dev.azure.com:v3/contoso/billing/billing",
        "postgres://app:{}@db.fabrikam.io:5432/orders",
        "https://deploy:{}@registry.fabrikam.io/v2/",
    ],
)
def test_remotes_and_url_credentials_are_not_addresses(template: str) -> None:
    text = template.format(pii.token(RNG, "db_password"))
    assert "email" not in {c for c, _ in _found(text)}


def test_a_german_number_written_with_a_slash() -> None:
    text = "Tel.: 0151/62431807 - bitte zurückrufen"
    assert _found(text) == [("phone", "0151/62431807")]
    assert _found("Kalenderwoche 2024/2025 und 12/07/2026") == []


@pytest.mark.parametrize(
    "text",
    [
        "shipped 2026-11-4471 ok",  # a year-first reference, not a US number
        "Employer identification number (EIN) 84-3920114",
        "EAN 4006381333931, 5901234123457 and 0012345678905",  # 00 + digits, unformatted
    ],
)
def test_national_looking_groups_that_no_one_dials(text: str) -> None:
    assert "phone" not in {c for c, _ in _found(text)}


@pytest.mark.parametrize(
    "number", ["(212) 718-4402", "212-718-4402", "1-212-718-4402", "612 34 56 78", "347 123 4567"]
)
def test_national_numbers_in_their_usual_groups_are_still_found(number: str) -> None:
    assert _found(f"reach the desk at {number} today") == [("phone", number)]


def test_an_unformatted_00_number_needs_its_name() -> None:
    assert _found("barcode 0046701234567 scanned") == []
    assert _found("phone 0046701234567") == [("phone", "0046701234567")]
    assert _found("ring me on 0046701234567 tomorrow") == [("phone", "0046701234567")]


@pytest.mark.parametrize(
    "words", ["Bestellnummer", "Rechnungsnr.", "n° de commande", "número de pedido", "fattura"]
)
def test_numbers_named_as_orders_in_other_languages_are_not_cards(words: str) -> None:
    number = pii.card(RNG, "visa", "")
    assert _found(f"{words} {number} - das Paket ist beschädigt") == []


def test_a_card_on_file_is_a_card() -> None:
    number = pii.card(RNG, "visa", " ")
    assert _found(f"card on file: {number}") == [("payment_card", number)]
    assert _found("log file: 4539148803436467") == []


def test_an_endpoint_assigned_to_a_password_name_is_not_a_password() -> None:
    key = testkeys.shared_access_key()
    text = (
        'password="Endpoint=sb://evh-telemetry.servicebus.windows.net/;'
        f'SharedAccessKeyName=producer;SharedAccessKey={key};EntityPath=events";'
    )
    assert {c for c, _ in _found(text)} == {"azure_shared_access_key"}
    assert _found("password = 'Kestrel512$abc'") == [("password", "Kestrel512$abc")]


def test_a_password_in_an_xml_element() -> None:
    text = "<server><id>nexus</id><username>deployer</username><password>Kestrel512$abc</password>"
    assert _found(text) == [("password", "Kestrel512$abc")]
    assert _found("<password>${env.NEXUS_PASSWORD}</password><passwordMinLength>12</x>") == []
    assert _found("<token>abc</token> <password>changeme</password>") == []


def test_a_fiscal_code_typed_in_lower_case() -> None:
    code = pii.it_fiscal_code(RNG)
    assert _found(f"il mio codice fiscale è {code.lower()}, grazie") == [
        ("it_fiscal_code", code.lower())
    ]
    assert _found("built on ubuntu2204 with python311 and openssl30") == []


@pytest.mark.parametrize("space", ["\u00a0", "\u202f", "\u2009", "\u2007"])
def test_digits_grouped_with_no_break_or_thin_spaces(space: str) -> None:
    card = pii.card(RNG, "visa", " ")
    iban = pii.iban_number(RNG, "FR")
    text = f"carte {card.replace(' ', space)}, RIB : {iban.replace(' ', space)}"
    assert _found(text) == [
        ("payment_card", card.replace(" ", space)),
        ("iban", iban.replace(" ", space)),
    ]


def test_an_address_in_a_url_is_not_a_version() -> None:
    text = "the panel is open at http://81.2.69.160/admin"
    assert _found(text) == [("ip_address", "81.2.69.160")]
    assert _found("UA Chrome/120.0.6099.109") == []


def test_an_odbc_password_in_braces_is_a_password_a_template_is_not() -> None:
    password = pii.token(RNG, "db_password") + ";x"
    text = f"Driver={{ODBC Driver 18}};Server=tcp:sql01,1433;Uid=app;Pwd={{{password}}};"
    assert _found(text) == [("connection_string_password", password)]
    for template in ("{password}", "{0}", "{db.pw}", "{{ pw }}"):
        assert _found(f"Server=db;Uid=app;Pwd={template};") == []


@pytest.mark.parametrize(
    "template",
    [
        "@secure()\nparam adminPassword string = '{}'",
        'private dbPassword: string = "{}";',
        'var smtpPassword string = "{}"',
    ],
)
def test_a_password_assigned_with_a_string_type(template: str) -> None:
    assert _found(template.format("Kestrel512$abc")) == [("password", "Kestrel512$abc")]


def test_typed_names_without_a_secret_value() -> None:
    assert _found("password: string = process.env.PW") == []
    assert _found('const greeting: string = "Kestrel512$abc"') == []


def test_internationalised_addresses() -> None:
    text = "Schreib an jürgen.weiß@müller-bäckerei.de oder info@münchen.de."
    assert _found(text) == [
        ("email", "jürgen.weiß@müller-bäckerei.de"),
        ("email", "info@münchen.de"),
    ]


def test_storage_keys_listed_by_the_azure_cli() -> None:
    key = testkeys.storage_key()
    text = (
        '[\n  {\n    "creationTime": "2025-03-11T08:14:52.338120+00:00",\n'
        f'    "keyName": "key1",\n    "permissions": "FULL",\n    "value": "{key}"\n  }}\n]'
    )
    assert _found(text) == [("azure_storage_key", key)]
    assert _found(text.replace('"keyName": "key1"', '"name": "thumbnail"')) == []


def test_ids_typed_in_lower_case_after_their_name() -> None:
    nino = pii.gb_nino(RNG).replace(" ", "").lower()
    dni = pii.es_dni(RNG).lower()
    assert _found(f"my ni no is {nino}") == [("gb_nino", nino)]
    assert _found(f"mi dni es {dni}") == [("es_dni", dni)]
    assert _found(f"build {nino} and {dni} done") == []


def test_a_phone_number_with_an_extension_written_x() -> None:
    assert _found("cell: 212-718-4402x15") == [("phone", "212-718-4402")]


def test_a_redis_url_with_no_user_has_a_password() -> None:
    password = pii.token(RNG, "db_password")
    text = f"REDIS_URL=rediss://:{password}@redis-sessions.redis.cache.windows.net:6380/0"
    assert _found(text) == [("connection_string_password", password)]


def test_a_long_logs_dates_do_not_use_up_the_phone_parses() -> None:
    number = pii.phone(RNG, "DE")
    log = "\n".join(
        f"2026-12-0{1 + i % 9} {10 + i % 12}:{i % 60:02d}:07.{i:03d} INFO batch {100000 + i}"
        for i in range(400)
    )
    assert _found(f"{log}\ncallback requested: {number}") == [("phone", number)]


def test_multicast_addresses_are_not_personal_data() -> None:
    text = "mDNS 224.0.0.251, SSDP 239.255.255.250, all nodes ff02::1, global scope ff0e::1"
    assert _found(text) == []
    assert _found("client 81.2.69.160 via ff02::1") == [("ip_address", "81.2.69.160")]


def test_generated_public_addresses_are_never_multicast() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        assert not 224 <= int(pii.public_ip(rng).split(".")[0]) <= 239


def test_an_address_at_an_internationalised_top_level_domain() -> None:
    text = "Contact: info@xn--80ak6aa92e.xn--p1ai for the office."
    assert _found(text) == [("email", "info@xn--80ak6aa92e.xn--p1ai")]
    assert _found("mail INFO@XN--80AK6AA92E.XN--P1AI") == [
        ("email", "INFO@XN--80AK6AA92E.XN--P1AI")
    ]


@pytest.mark.parametrize(
    "number",
    ["4111 1111 4555 1142", "5555 3412 4444 1115", "3700 0000 0000 002", "4543474002249996",
     "6011000000000012", "4007000000027", "2223000048400011", "4000 0025 0000 3155"],
)  # fmt: skip
def test_payment_processors_published_test_cards_are_not_cards(number: str) -> None:
    assert _found(f"sandbox card {number}, any CVC") == []


@pytest.mark.parametrize(
    "template",
    [
        "EXEC sp_addlinkedsrvlogin @rmtsrvname = N'ERP01', @rmtpassword = N'{}';",
        "CREATE LOGIN etl WITH PASSWORD = N'{}';",
        "dbpassword={}",
        'var password = @"{}";',
    ],
)
def test_a_password_in_a_prefixed_literal_or_glued_to_its_name(template: str) -> None:
    assert _found(template.format("Kestrel512$abc")) == [("password", "Kestrel512$abc")]
    assert _found("bypass=Kestrel512$abc compass: Kestrel512$abc") == []


def test_a_base64_encoded_placeholder_password_is_not_a_password() -> None:
    for placeholder in ("changeme", "password", "${DB_PASSWORD}"):
        encoded = base64.b64encode(placeholder.encode()).decode()
        assert _found(f"kind: Secret\ndata:\n  password: {encoded}\n") == []
    encoded = base64.b64encode(b"Kestrel512$abc").decode()
    assert _found(f"data:\n  password: {encoded}\n") == [("password", encoded)]


def test_a_card_grouped_with_dots() -> None:
    card = pii.card(RNG, "visa", ".")
    assert _found(f"card no. {card} declined") == [("payment_card", card)]
    assert _found("build 4539.1488.0343.6468 and release 4.5.6.7") == []


def test_an_international_number_written_with_dots() -> None:
    assert _found("Tel +33.6.47.21.93.05") == [("phone", "+33.6.47.21.93.05")]
    assert _found("version 10.0.19041.1 and build 6.12.34.56.7") == []


def test_an_international_number_as_a_url_path_segment() -> None:
    text = "GET /v2/contacts/+33647219305/messages returned 404"
    assert _found(text) == [("phone", "+33647219305")]
    assert _found("GET /v2/items/+1234/ and /files/+33647219305x/") == []


def test_an_address_in_a_url_query_string() -> None:
    text = "https://crm.fabrikam.com/search?email=jonas.berg@fabrikam.com&sort=desc"
    assert _found(text) == [("email", "jonas.berg@fabrikam.com")]
    assert _found("https://crm.fabrikam.com/u?a=1&to=ops@fabrikam.com") == [
        ("email", "ops@fabrikam.com")
    ]


def test_a_password_after_a_yaml_anchor_or_in_toml_triple_quotes() -> None:
    assert _found('db:\n  password: &pw "Kestrel512$abc"\n  copy: *pw') == [
        ("password", "Kestrel512$abc")
    ]
    assert _found('password = """Kestrel512$abc"""') == [("password", "Kestrel512$abc")]
    assert _found("password: &pw changeme") == []
