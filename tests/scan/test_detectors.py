"""Each credential kind is found, validated, and its look-alikes and placeholders are not."""

from __future__ import annotations

import pytest

from keyguard.scan import testkeys
from keyguard.scan.fingerprint import fingerprint

from .conftest import KEY, scan

ENDPOINT = 'endpoint = "https://unit.openai.azure.com/"\n'


@pytest.mark.parametrize(
    ("gen", "arg", "kind"),
    [
        ("AZURE", "openai", "azure_openai_key"),
        ("AZURE", "openai,base62", "azure_openai_key"),
        ("AZURE", "ai_services", "azure_ai_services_key"),
        ("AZURE", "cognitive_services", "azure_cognitive_services_key"),
        ("AZURE", "speech_services", "azure_cognitive_services_key"),
        ("KGK", "", "keyguard_key"),
        ("SK", "proj", "openai_key"),
        ("SK", "user", "openai_key"),
        ("SK", "svcacct", "openai_key"),
        ("ENTRA", "", "entra_client_secret"),
        ("JWT", "", "jwt"),
    ],
)
def test_structured_kinds_found_anywhere(gen: str, arg: str, kind: str) -> None:
    value = testkeys.generate(gen, arg)
    findings = scan(f'x = 1\nvalue = "{value}"\n')
    assert [(f.kind, f.line) for f in findings] == [(kind, 2)]
    assert findings[0].fingerprint == fingerprint(value, KEY)


def test_azure_detail_names_service_and_encoding() -> None:
    value = testkeys.generate("AZURE", "ai_services,base62")
    (f,) = scan(f"k={value}")
    assert f.confidence == "high"
    assert "Azure AI Services" in f.detail and "base62" in f.detail


def test_lookalikes_are_not_reported() -> None:
    text = "\n".join(
        [
            testkeys.generate("LOOKALIKE_AZURE"),
            testkeys.generate("LOOKALIKE_KGK"),
            "sk-proj-abcdefghijklmnopqrstuvwxyz",  # no T3BlbkFJ marker
            "abc8Q~short",
        ]
    )
    assert scan(text) == []


def test_storage_connection_string_and_identifiable_key() -> None:
    key = testkeys.generate("STORAGE")
    ident = testkeys.generate("STORAGE_ID")
    text = (
        f"conn = 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey={key};'\n"
        f"other = '{ident}'\n"
    )
    found = scan(text)
    assert [(f.kind, f.line, f.detail) for f in found] == [
        ("azure_storage_key", 1, "connection string"),
        ("azure_storage_key", 2, "Storage account identifiable key, checksum verified"),
    ]


def test_well_known_samples_are_not_reported() -> None:
    # The Azure Storage emulator key is built here from its public documentation value.
    azurite = (
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    )
    text = f"UseDevelopmentStorage: AccountName=devstoreaccount1;AccountKey={azurite};\n"
    text += f"token = '{testkeys.generate('JWT', 'sample')}'\n"
    assert scan(text) == []


def test_unsigned_jwt_is_not_reported() -> None:
    assert scan("t = 'eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxMjM0NTY3ODkwIn0.'") == []


def test_bearer_tokens() -> None:
    token = testkeys.generate("BEARER")
    found = scan(f'headers = {{"Authorization": "Bearer {token}"}}\n')
    assert [f.kind for f in found] == ["bearer_token"]
    for doc in ("Bearer ${TOKEN}", "Bearer <access-token>", "Bearer YOUR_ACCESS_TOKEN_HERE"):
        assert scan(f"Authorization: {doc}\n") == []


def test_jwt_after_bearer_is_reported_once_as_jwt() -> None:
    token = testkeys.generate("JWT")
    assert [f.kind for f in scan(f"Authorization: Bearer {token}")] == ["jwt"]


@pytest.mark.parametrize(
    "value",
    [
        "00000000000000000000000000000000",
        "0123456789abcdef0123456789abcdef",
        "abcdabcdabcdabcdabcdabcdabcdabcd",
        "deadbeefdeadbeefdeadbeefdeadbeef",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ],
)
def test_hex_placeholders_are_not_reported(value: str) -> None:
    assert scan(ENDPOINT + f'AZURE_OPENAI_API_KEY = "{value}"\n') == []


def test_placeholder_words_in_keyguard_key_body() -> None:
    assert scan("kgk_REPLACE_ME and kgk_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx") == []


def test_boundaries_reject_keys_inside_longer_tokens() -> None:
    key = testkeys.generate("AZURE")
    assert scan(f"x{key}") == []
    assert scan(f"{key}0") == []
    hexkey = testkeys.generate("LEGACY")
    assert scan(ENDPOINT + f"api_key = '{hexkey}0'\n") == []


def test_an_aws_secret_set_on_the_command_line() -> None:
    secret = "k7Qz2mVb9XwR4tLp8NcY1hGd6JsFa3Ue5Oi0Tq+/"
    findings = scan(f"+ aws configure set aws_secret_access_key {secret}\n")
    assert [f.kind for f in findings] == ["aws_secret_key"]
    assert scan("aws_secret_access_key is the name of the setting\n") == []


def test_thousands_of_values_in_one_text_are_each_reported_once_in_order() -> None:
    """Overlaps are resolved against each hit's neighbours (a quadratic pass over every kept
    hit made a text dense with values cost seconds); a value inside a connection string is
    still reported once, as the connection string's."""
    text = "".join(
        f"conn{i} = 'AccountName=a;AccountKey={testkeys.generate('STORAGE')};'\n"
        if i % 2
        else f"k{i} = '{testkeys.generate('STORAGE_ID')}'\n"
        for i in range(3000)
    )
    found = scan(text)
    assert [f.line for f in found] == list(range(1, 3001))
    assert {f.detail for f in found[1::2]} == {"connection string"}


@pytest.mark.parametrize("end", [".", ". Rotate it.", ".\n", '."'])
def test_an_entra_secret_at_the_end_of_a_sentence_is_found_without_the_full_stop(
    end: str,
) -> None:
    value = testkeys.generate("ENTRA")
    text = f"the client secret is {value}{end}"
    (f,) = scan(text)
    assert f.kind == "entra_client_secret"
    assert f.fingerprint == fingerprint(value, KEY)  # the value, not its full stop


def test_an_entra_shape_running_on_after_a_dot_is_not_cut_there() -> None:
    value = testkeys.generate("ENTRA")
    assert scan(f"x = {value}.more~chars") == []
