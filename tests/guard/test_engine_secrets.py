"""The engine's secret detectors: the scanner's kinds, encodings and split strings, hostile
inputs first (huge, invisible characters, lone surrogates), and never the value in a match."""

from __future__ import annotations

import base64
import random
import secrets
import string
from urllib.parse import quote

import pytest

from keyguard.guard.engine import GuardEngine
from keyguard.guard.findings import Match, Slot
from keyguard.guard.settings import GuardSettings
from keyguard.scan import testkeys
from keyguard.scan.placeholders import entropy

ENGINE = GuardEngine()


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _pem() -> str:
    lines = [base64.b64encode(secrets.token_bytes(48)).decode() for _ in range(12)]
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----"


def _only(text: str) -> Match:
    found = ENGINE.scan(text)
    assert len(found) == 1, found
    return found[0]


# --- hostile inputs ------------------------------------------------------------------------


def test_a_text_over_the_cap_is_read_up_to_it_and_the_rest_reported_unscanned() -> None:
    key = testkeys.azure_key()
    engine = GuardEngine(GuardSettings(max_text_chars=10_000))
    text = "a " * 6_000 + key
    found = engine.scan(text)
    assert [m.category for m in found] == ["unscanned"]
    assert (found[0].family, found[0].start, found[0].end) == ("secret", 10_000, len(text))


def test_a_request_over_its_budget_reports_the_remaining_texts_unscanned() -> None:
    engine = GuardEngine(GuardSettings(max_text_chars=1_000, max_request_chars=1_000))
    slots = [Slot(("messages", i, "content"), "user", "x" * 600) for i in range(3)]
    cats = [(s.path[1], m.category) for s, m in engine.scan_slots(slots)]
    assert cats == [(2, "unscanned")]


def test_zero_width_characters_do_not_hide_a_key_and_the_match_covers_them() -> None:
    key = testkeys.azure_key()
    hidden = "\u200b".join(key[i : i + 10] for i in range(0, len(key), 10))
    text = f"use {hidden} now"
    m = _only(text)
    assert m.category == "azure_openai_key"
    assert text[m.start : m.end] == hidden


def test_full_width_forms_are_folded() -> None:
    key = testkeys.openai_key()
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in key)
    m = _only(f"key: {wide}")
    assert m.category == "openai_key"


def test_lone_surrogates_and_replacement_characters_never_crash() -> None:
    key = testkeys.keyguard_key()
    for text in (f"\ud800{key}\udfff", "\ud83d" * 1000, f"\ufffd{key}"):
        found = ENGINE.scan(text)
        assert all(isinstance(m, Match) for m in found)
    assert [m.category for m in ENGINE.scan(f"\ud800 {key} \udfff")] == ["keyguard_key"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\x00" * 10_000,
        "-----BEGIN PRIVATE KEY-----" * 2_000,
        "eyJ" * 20_000,
        "a" * 200_000,
        "@" * 50_000,
        "=" * 100_000,
        '"a" + "b" + ' * 5_000,
        "%41" * 30_000,
        "JQQJ99" * 10_000,
        "postgres://a:b@" * 5_000,
    ],
)
def test_pathological_texts_finish_and_find_nothing(text: str) -> None:
    assert ENGINE.scan(text) == []


def test_matches_never_carry_the_value() -> None:
    key = testkeys.azure_key()
    m = _only(f"AZURE_OPENAI_API_KEY={key}")
    assert key not in repr(m)
    assert set(Match.__slots__) == {"family", "category", "detector", "start", "end"}


# --- what is found ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "category"),
    [
        (testkeys.azure_key(), "azure_openai_key"),
        (testkeys.keyguard_key(), "keyguard_key"),
        (testkeys.openai_key(), "openai_key"),
        (testkeys.entra_secret(), "entra_client_secret"),
        (testkeys.jwt(), "jwt"),
        (_pem(), "private_key"),
        ("AKIA" + _rand(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), "aws_access_key"),
        ("ghp_" + _rand(36), "github_token"),
        ("github_pat_" + _rand(22) + "_" + _rand(59), "github_token"),
        ("xoxb-" + _rand(11, string.digits) + "-" + _rand(24), "slack_token"),
        ("sk_live_" + _rand(24), "stripe_key"),
        ("glpat-" + _rand(20), "gitlab_token"),
        ("hf_" + _rand(34), "huggingface_token"),
        ("AIza" + _rand(35), "google_api_key"),
        ("GOCSPX-" + _rand(28), "google_oauth_secret"),
        ("gsk_" + _rand(52), "groq_key"),
        ("dapi" + _rand(32, "0123456789abcdef"), "databricks_token"),
        (_rand(9, string.digits) + ":AA" + _rand(33), "telegram_bot_token"),
        ("sk-ant-api03-" + _rand(93) + "AA", "anthropic_key"),
        ("SG." + _rand(22) + "." + _rand(43), "sendgrid_key"),
    ],
)
def test_each_kind_is_found_with_its_category(value: str, category: str) -> None:
    text = f"here is the credential: {value} -- thanks"
    m = _only(text)
    assert (m.family, m.category) == ("secret", category)
    assert text[m.start : m.end] == value


def test_a_service_account_json_is_a_gcp_key() -> None:
    body = _pem().replace("\n", "\\n")
    text = (
        '{"type": "service_account", "project_id": "p", "private_key_id": "'
        + _rand(40, "0123456789abcdef")
        + f'", "private_key": "{body}", "client_email": "x@p.iam.gserviceaccount.com"}}'
    )
    found = [(m.family, m.category) for m in ENGINE.scan(text)]
    assert found == [("secret", "gcp_service_account_key")]  # a service account: no person


def test_connection_strings_and_urls_with_passwords() -> None:
    storage = testkeys.storage_key()
    text = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={storage};"
    assert _only(text).category == "azure_storage_key"
    pw = _rand(20)
    assert _only(f"DATABASE_URL=postgres://app:{pw}@db.internal:5432/app").category == (
        "connection_string_password"
    )


@pytest.mark.parametrize(
    "template",
    [
        "Server=tcp:sql-x.database.windows.net,1433;Database=db;User ID=app;Password={pw};",
        "cache-x.redis.cache.windows.net:6380,password={pw},ssl=True,abortConnect=False",
        "mysql://svc:{pw}@10.0.0.5:3306/shop",
        "jdbc:sqlserver://sql01:1433;databaseName=hr;user=hr_app;password={pw};encrypt=true",
        "jdbc:oracle:thin:@//db01:1521/ORCL?user=app&password={pw}",
    ],
)
def test_passwords_in_connection_strings(template: str) -> None:
    pw = _rand(20)
    text = template.format(pw=pw)
    m = _only(text)
    assert m.category == "connection_string_password" and text[m.start : m.end] == pw


@pytest.mark.parametrize(
    "text",
    [
        "Server=db;Database=app;User Id=sa;Password=<password>;",
        "Server=db;User Id=sa;Password=${SQL_PASSWORD};",
        "the password=changeme is the default",
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",  # user:password
    ],
)
def test_password_placeholders_are_not_reported(text: str) -> None:
    assert ENGINE.scan(text) == []


def test_basic_credentials_and_a_key_sent_as_the_basic_password() -> None:
    creds = base64.b64encode(f"svc-reporting:{_rand(18)}".encode()).decode()
    assert _only(f"Authorization: Basic {creds}").category == "basic_auth"
    key = testkeys.azure_key()
    wrapped = base64.b64encode(f"apikey:{key}".encode()).decode()
    assert _only(f"Authorization: Basic {wrapped}").category == "azure_openai_key"


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: base64.b64encode(f"api_key={s}".encode()).decode(),
        lambda s: quote(f"key={s}", safe=""),
    ],
)
def test_encoded_keys_are_found_over_their_encoded_span(encode: object) -> None:
    key = testkeys.azure_key()
    encoded = encode(key)  # type: ignore[operator]
    text = f"config blob: {encoded} end"
    m = _only(text)
    assert m.category == "azure_openai_key" and m.detector.startswith("azure_openai_key/")
    assert key not in text[: m.start] + text[m.end :]


def test_a_key_split_across_string_literals_is_found() -> None:
    key = testkeys.openai_key()
    text = f'client = OpenAI(api_key="{key[:40]}" + "{key[40:]}")'
    m = _only(text)
    assert m.category == "openai_key" and m.detector.endswith("/concatenation")


def test_an_aws_key_id_whose_random_part_repeats_by_chance_is_found() -> None:
    rng = random.Random(0)
    while True:  # one random key id in ~300 has a part of less than 3 bits
        part = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        if 2.5 <= entropy(part) < 3.0:
            break
    m = _only(f"aws_access_key_id = AKIA{part}")
    assert m.category == "aws_access_key"
    assert ENGINE.scan("aws_access_key_id = AKIAAAAABBBBAAAABBBB") == []


@pytest.mark.parametrize(
    "text",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC...\n"
        "-----END PRIVATE KEY-----",
        "postgres://user:password@localhost:5432/db",
        "postgres://user:${DB_PASSWORD}@db:5432/app",
        "sk_live_" + "x" * 24,
        testkeys.azure_lookalike(),
        testkeys.uuid(),
        testkeys.sha1(),
    ],
)
def test_placeholders_and_lookalikes_are_not_secrets(text: str) -> None:
    assert [m for m in ENGINE.scan(text) if m.family == "secret"] == []


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ('spring.datasource.password: "Harbor2291!xq"', "password"),
        ("POSTGRES_PASSWORD=Quartz77#Lm", "password"),
        ('{"client_secret": "q8Z3kL9pQ2mN7xZ4aR5t"}', "named_secret"),
        ('<add key="SmtpPassword" value="Harbor2291!xq" />', "password"),
        ("<add name='Stripe.ApiKey' value='q8Z3kL9pQ2mN7xZ4aR5t'/>", "named_secret"),
        ("MAILCHIMP_API_KEY=3e87cca78214af2fdac03d4403d7188c-us21", "named_secret"),
    ],
)
def test_values_named_as_passwords_or_secrets(text: str, category: str) -> None:
    assert _only(text).category == category


@pytest.mark.parametrize(
    "text",
    [
        "password_min_length: 12",
        'password = os.environ["DB_PASSWORD"]',
        "client_secret = settings.CLIENT_SECRET",
        "DB_PASSWORD=changeme",
        "password: <your-password>",
        "max_tokens: 4096",
        "password: hunter2",
        "keyVaultSecretName: openai-api-key",
        '<add key="PageSize" value="Harbor2291!xq" />',  # the name is not a secret's
        '<add key="SmtpPassword" value="$(SMTP_PASSWORD)" />',
        f'{{"api_key": "{testkeys.azure_lookalike()}"}}',  # a checksum that fails
        f"KEYGUARD_API_KEY={testkeys.keyguard_lookalike()}",
    ],
)
def test_names_without_a_secret_value(text: str) -> None:
    assert ENGINE.scan(text) == []
