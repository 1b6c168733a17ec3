"""Generators for the guardrails corpus: ``NAME -> (category or None, make(rng))``.

``make`` returns ``(value, label, key)``: the value planted in a case, words that name it in
prose (``card number``, ``Steuer-ID``) and a field name for code and config forms. A
category of ``None`` marks a hard negative: anything reported on it is a false positive.
All values are generated at build time (nothing real is committed).
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable

from stdnum import luhn

from keyguard.guard import samples
from keyguard.scan import testkeys

Made = tuple[str, str, str]
Gen = tuple[str | None, Callable[[random.Random], Made]]


def _sas(rng: random.Random) -> Made:
    from urllib.parse import quote

    sig = quote(testkeys.sas_signature(), safe="")
    url = (
        f"https://stcontoso{rng.randint(10, 99)}.blob.core.windows.net/invoices/2026/11.pdf?"
        f"sv=2022-11-02&ss=b&srt=o&sp=r&se=2026-12-31T23:59:59Z&spr=https&sig={sig}"
    )
    return url, "SAS link", "blob_url"


def _gcp(rng: random.Random) -> Made:
    doc = {
        "type": "service_account",
        "project_id": f"analytics-{rng.randint(1000, 9999)}",
        "private_key_id": "".join(rng.choice("0123456789abcdef") for _ in range(40)),
        "private_key": samples.token(rng, "private_key").replace("EC ", "").replace("RSA ", ""),
        "client_email": f"etl@analytics-{rng.randint(1000, 9999)}.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return json.dumps(doc, indent=2), "service account key file", "GOOGLE_CREDENTIALS"


def _password(rng: random.Random) -> str:
    words = ["Summer", "Harbor", "Violet", "Tundra", "Quartz", "Maple", "Falcon", "Cobalt"]
    return (
        rng.choice(words) + str(rng.randint(10, 9999)) + rng.choice("!#%&*?@")
        + "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(0, 4)))
    )  # fmt: skip


def _fixed(value: str, label: str, key: str) -> Callable[[random.Random], Made]:
    return lambda rng: (value, label, key)


def _luhn_order(rng: random.Random) -> Made:
    body = "4" + "".join(rng.choice(string.digits) for _ in range(14))
    return body + luhn.calc_check_digit(body), "order number", "order_id"


def _isbn(rng: random.Random) -> Made:
    from stdnum import ean

    body = "978" + "".join(rng.choice(string.digits) for _ in range(9))
    number = body + ean.calc_check_digit(body)
    return f"{number[:3]}-{number[3]}-{number[4:7]}-{number[7:12]}-{number[12]}", "ISBN", "isbn"


def _broken_card(rng: random.Random) -> Made:
    number = samples.card(rng, "visa", "")
    wrong = number[:-1] + str((int(number[-1]) + 3) % 10)
    return f"{wrong[:4]} {wrong[4:8]} {wrong[8:12]} {wrong[12:]}", "card number", "card"


def _broken_iban(rng: random.Random) -> Made:
    number = samples.iban_number(rng, "DE", spaced=False)
    wrong = number[:4] + number[5] + number[4] + number[6:]
    if wrong == number:
        wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    return " ".join(wrong[i : i + 4] for i in range(0, len(wrong), 4)), "IBAN", "iban"


def _hex(n: int) -> Callable[[random.Random], Made]:
    return lambda rng: ("".join(rng.choice("0123456789abcdef") for _ in range(n)), "hash", "sha")


def _uuid(rng: random.Random) -> Made:
    h = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}", "request id", "request_id"


def _private_ip(rng: random.Random) -> Made:
    return (
        rng.choice([f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                    f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                    f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                    "127.0.0.1", f"203.0.113.{rng.randint(1, 254)}"]),
        "host", "host",
    )  # fmt: skip


def _version(rng: random.Random) -> Made:
    return (
        f"{rng.randint(1, 20)}.{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9999)}",
        "version",
        "version",
    )


def _timestamp(rng: random.Random) -> Made:
    return (
        f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
        f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z",
        "timestamp",
        "ts",
    )


def _tracking(rng: random.Random) -> Made:
    return (
        "1Z" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
        "tracking number",
        "tracking",
    )


# Account-number structure of more countries' IBANs (SWIFT's registry: n digits, a upper-case
# letters, c either), for the held-out forms: letters in every group (RO, SA, QA) included
_IBAN_BBAN = {
    "PL": "8n16n", "PT": "4n4n11n2n", "SE": "3n16n1n", "NO": "4n6n1n", "DK": "4n9n1n",
    "FI": "3n11n", "IE": "4a6n8n", "LU": "3n13c", "CZ": "4n16n", "HU": "3n4n1n15n1n",
    "RO": "4a16c", "GR": "3n4n16c", "HR": "7n10n", "SI": "5n8n2n", "LT": "5n11n", "EE": "2n14n",
    "BG": "4a4n2n8c", "MT": "4a5n18c", "SA": "2n18c", "AE": "3n16n", "TR": "5n1n16c",
    "BR": "8n5n10n1a1c", "IS": "4n2n6n10n", "SK": "4n6n10n", "PK": "4a16c", "QA": "4a21c",
}  # fmt: skip
_CLASSES = {"n": string.digits, "a": string.ascii_uppercase,
            "c": string.digits + string.ascii_uppercase}  # fmt: skip


def _iban_world(rng: random.Random) -> Made:
    from stdnum import iban

    country = rng.choice(sorted(_IBAN_BBAN))
    while True:
        bban = "".join(
            rng.choice(_CLASSES[kind])
            for n, kind in re.findall(r"(\d+)([nac])", _IBAN_BBAN[country])
            for _ in range(int(n))
        )
        number = country + iban.calc_check_digits(country + "00" + bban) + bban
        if iban.is_valid(number):
            break
    if rng.random() < 0.5:
        number = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return number, "IBAN", "iban"


def _card_more(rng: random.Random) -> Made:
    """Issuers and lengths beyond the common 16-digit ones, grouped as printed."""
    prefix, length, groups = rng.choice(
        [("36", 14, [4, 6, 4]), ("62", 19, [19]), ("6759", 16, [4, 4, 4, 4]),
         ("4", 13, [13]), ("65", 16, [4, 4, 4, 4]), ("2200", 16, [4, 4, 4, 4])]
    )  # fmt: skip
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    number = body + luhn.calc_check_digit(body)
    out, pos = [], 0
    for g in groups:
        out.append(number[pos : pos + g])
        pos += g
    return rng.choice([" ", "-"]).join(out), "card number", "card_number"


def _email_odd(rng: random.Random) -> Made:
    return (
        rng.choice([
            "maria.gonzalez+invoices@fabrikam-consulting.com", "j.o'brien@mail.tcd.ie",
            "LENA.FISCHER@Northwind-Traders.DE", "hiro_tanaka99@studio.photography",
            "4471john@gmx.at", "first.m.last@dept.univ-lyon2.fr", "o-farid@adatum.co.uk",
        ]),
        "e-mail", "email",
    )  # fmt: skip


def _ssn_variant(rng: random.Random) -> Made:
    return samples.ssn(rng, rng.choice([" ", ""])), "social security number", "ssn"


def _hexr(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _pem_variant(rng: random.Random) -> Made:
    import base64

    label = rng.choice(["ENCRYPTED PRIVATE KEY", "PGP PRIVATE KEY BLOCK", "DSA PRIVATE KEY"])
    body = "\n".join(base64.b64encode(rng.randbytes(48)).decode() for _ in range(8))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----", "private key", "key"


GENERATORS: dict[str, Gen] = {
    # secrets
    "AZURE": ("azure_openai_key", lambda r: (testkeys.azure_key(), "Azure OpenAI key",
                                              "AZURE_OPENAI_API_KEY")),
    "AZURE_AI": ("azure_ai_services_key", lambda r: (testkeys.azure_key("ai_services"),
                                                     "AI Services key", "AZURE_AI_KEY")),
    "LEGACY": ("azure_legacy_key", lambda r: (testkeys.legacy_key(), "Speech key", "key")),
    "KEYGUARD": ("keyguard_key", lambda r: (testkeys.keyguard_key(), "gateway key",
                                            "KEYGUARD_API_KEY")),
    "OPENAI": ("openai_key", lambda r: (testkeys.openai_key(r.choice(["proj", "svcacct", "user"])),
                                        "OpenAI key", "OPENAI_API_KEY")),
    "ENTRA": ("entra_client_secret", lambda r: (testkeys.entra_secret(), "client secret",
                                                "AZURE_CLIENT_SECRET")),
    "STORAGE_CS": ("azure_storage_key", lambda r: (
        f"DefaultEndpointsProtocol=https;AccountName=stcontoso{r.randint(10, 99)};"
        f"AccountKey={testkeys.storage_key()};EndpointSuffix=core.windows.net",
        "storage connection string", "AZURE_STORAGE_CONNECTION_STRING")),
    "STORAGE_KEY": ("azure_storage_key", lambda r: (testkeys.storage_key(), "storage key",
                                                    "value")),
    "SERVICEBUS_CS": ("azure_shared_access_key", lambda r: (
        f"Endpoint=sb://orders-{r.randint(10, 99)}.servicebus.windows.net/;"
        f"SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={testkeys.shared_access_key()}",
        "Service Bus connection string", "SERVICEBUS_CONNECTION")),
    "SAS_URL": ("azure_sas_signature", _sas),
    "JWT": ("jwt", lambda r: (testkeys.jwt(), "access token", "access_token")),
    "PEM": ("private_key", lambda r: (samples.token(r, "private_key"), "private key",
                                      "private_key")),
    "GCP": ("gcp_service_account_key", _gcp),
    "AWS_ID": ("aws_access_key", lambda r: (samples.token(r, "aws_access_key"),
                                            "AWS access key", "AWS_ACCESS_KEY_ID")),
    "AWS_SECRET": ("aws_secret_key", lambda r: (
        "aws_secret_access_key = " + samples.token(r, "aws_secret_key"), "AWS credentials",
        "aws_config")),
    "AWS_SECRET_RAW": ("aws_secret_key", lambda r: (samples.token(r, "aws_secret_key"),
                       "AWS secret", "aws_secret_access_key")),
    "GITHUB": ("github_token", lambda r: (samples.token(r, "github_token"), "GitHub token",
                                          "GITHUB_TOKEN")),
    "GITHUB_PAT": ("github_token", lambda r: (samples.token(r, "github_pat"), "GitHub PAT",
                                              "GH_PAT")),
    "GITLAB": ("gitlab_token", lambda r: (samples.token(r, "gitlab_token"), "GitLab token",
                                          "GITLAB_TOKEN")),
    "SLACK": ("slack_token", lambda r: (samples.token(r, "slack_token"), "Slack bot token",
                                        "SLACK_BOT_TOKEN")),
    "SLACK_HOOK": ("slack_webhook", lambda r: (samples.token(r, "slack_webhook"),
                                               "Slack webhook", "SLACK_WEBHOOK_URL")),
    "STRIPE": ("stripe_key", lambda r: (samples.token(r, "stripe_key"), "Stripe key",
                                        "STRIPE_SECRET_KEY")),
    "NPM": ("npm_token", lambda r: (samples.token(r, "npm_token"), "npm token", "NPM_TOKEN")),
    "HF": ("huggingface_token", lambda r: (samples.token(r, "huggingface_token"),
                                           "Hugging Face token", "HF_TOKEN")),
    "ANTHROPIC": ("anthropic_key", lambda r: (samples.token(r, "anthropic_key"),
                                              "Anthropic key", "ANTHROPIC_API_KEY")),
    "SENDGRID": ("sendgrid_key", lambda r: (samples.token(r, "sendgrid_key"), "SendGrid key",
                                            "SENDGRID_API_KEY")),
    "GOOGLE_API": ("google_api_key", lambda r: (samples.token(r, "google_api_key"),
                                                "Maps API key", "GOOGLE_MAPS_KEY")),
    "DB_URL": ("connection_string_password", lambda r: (
        f"postgresql://app_user:{samples.token(r, 'db_password')}@db-prod-{r.randint(1, 9)}"
        ".internal:5432/orders", "database URL", "DATABASE_URL")),
    "ODBC_CS": ("connection_string_password", lambda r: (  # ODBC quotes a value in braces
        "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sql-crm.database.windows.net,1433;"
        f"Uid=crm_app;Pwd={{{samples.token(r, 'db_password')};x}};Encrypt=yes;",
        "ODBC connection string", "ODBC_CONNECTION")),
    "REDIS_URL": ("connection_string_password", lambda r: (  # no user before the colon
        f"rediss://:{samples.token(r, 'db_password')}@redis-sessions.redis.cache.windows.net"
        ":6380/0",
        "Redis URL", "REDIS_URL")),
    "PASSWORD": ("password", lambda r: (_password(r), "password", "DB_PASSWORD")),
    "AWS_STS_ID": ("aws_access_key", lambda r: (
        "ASIA" + "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
        "temporary AWS access key", "AccessKeyId")),
    "SLACK_USER": ("slack_token", lambda r: (
        f"xoxp-{r.randint(10**11, 10**12 - 1)}-{r.randint(10**11, 10**12 - 1)}-"
        f"{r.randint(10**12, 10**13 - 1)}-{_hexr(r, 32)}", "Slack user token", "SLACK_USER_TOKEN")),
    "PEM_MORE": ("private_key", _pem_variant),
    "JDBC_URL": ("connection_string_password", lambda r: (
        f"jdbc:sqlserver://sql{r.randint(1, 9):02d}.corp.local:1433;databaseName=hr;"
        f"user=hr_app;password={samples.token(r, 'db_password')};encrypt=true",
        "JDBC URL", "spring.datasource.url")),
    "MONGO_URL": ("connection_string_password", lambda r: (
        f"mongodb+srv://svc_orders:{samples.token(r, 'db_password')}@cluster0.ab{r.randint(1, 9)}cd"
        ".mongodb.net/orders?retryWrites=true", "MongoDB URI", "MONGO_URI")),
    "MAILCHIMP": ("named_secret", lambda r: (f"{_hexr(r, 32)}-us{r.randint(1, 21)}",
                                             "Mailchimp API key", "MAILCHIMP_API_KEY")),
    "API_SECRET": ("named_secret", lambda r: (
        "".join(r.choice(string.ascii_letters + string.digits) for _ in range(r.randint(20, 40))),
        "API secret", "api_secret")),
    # personal data
    "CARD": ("payment_card", lambda r: (samples.card(r, r.choice(
        ["visa", "mastercard", "mc2", "amex", "discover", "jcb"]), r.choice(["", " ", "-"])),
        "card number", "card_number")),
    "IBAN": ("iban", lambda r: (samples.iban_number(r, r.choice(
        ["DE", "FR", "NL", "ES", "IT", "GB", "BE", "AT", "CH"]), r.random() < 0.6), "IBAN",
        "iban")),
    "SSN": ("us_ssn", lambda r: (samples.ssn(r), "SSN", "ssn")),
    "DE_TAX": ("de_tax_id", lambda r: (samples.de_tax_id(r), "Steuer-ID", "steuer_id")),
    "FR_NIR": ("fr_nir", lambda r: (samples.fr_nir(r), "numéro de sécurité sociale", "nir")),
    "ES_DNI": ("es_dni", lambda r: (samples.es_dni(r), "DNI", "dni")),
    "ES_NIE": ("es_nie", lambda r: (samples.es_nie(r), "NIE", "nie")),
    "IT_CF": ("it_fiscal_code", lambda r: (samples.it_fiscal_code(r), "codice fiscale",
                                           "codice_fiscale")),
    "NL_BSN": ("nl_bsn", lambda r: (samples.nl_bsn(r), "BSN", "bsn")),
    "GB_NINO": ("gb_nino", lambda r: (samples.gb_nino(r), "National Insurance number", "nino")),
    "EMAIL": ("email", lambda r: (samples.email(r), "e-mail", "email")),
    "EMAIL_IDN": ("email", lambda r: (  # an internationalised address (fictional domains)
        r.choice(["jürgen.weiß", "zoë.lefèvre", "søren"]) + "@"
        + r.choice(["müller-bäckerei.de", "café-lumière.fr", "straßenbau-nord.at"]), "E-Mail",
        "email")),
    "PHONE": ("phone", lambda r: (samples.phone(r, r.choice(["GB", "DE", "FR", "US", "NL", "ES"])),
                                  "phone", "phone")),
    "PHONE_US": ("phone", lambda r: (samples.phone(r, "US", international=False), "phone",
                                     "phone")),
    "PHONE_FR": ("phone", lambda r: (samples.phone(r, "FR", international=False), "portable",
                                     "telephone")),
    "PHONE_DE": ("phone", lambda r: (  # written 0151/2345678
        samples.phone(r, "DE", international=False).replace(" ", "/", 1), "Tel.", "telefon")),
    "IBAN_WORLD": ("iban", _iban_world),
    "CARD_MORE": ("payment_card", _card_more),
    "EMAIL_ODD": ("email", _email_odd),
    "SSN_VARIANT": ("us_ssn", _ssn_variant),
    "PHONE_WORLD": ("phone", lambda r: (samples.phone(r, r.choice(
        ["CH", "IN", "BR", "JP", "AU", "PL", "SE", "IE", "MX", "AT", "BE", "PT", "IT", "ES",
         "NL"])), "mobile", "mobile")),
    "PHONE_NATIONAL": ("phone", lambda r: (samples.phone(
        r, r.choice(["IT", "ES", "NL", "GB", "DE"]), international=False), "phone", "phone")),
    "IP": ("ip_address", lambda r: (samples.public_ip(r), "IP address", "client_ip")),
    "IP6": ("ip_address", lambda r: (samples.public_ip(r, 6), "IPv6 address", "client_ip")),
    # hard negatives
    "ORDER": (None, _luhn_order),
    "ISBN": (None, _isbn),
    "UUID": (None, _uuid),
    "SHA256": (None, _hex(64)),
    "SHA1": (None, _hex(40)),
    "MD5": (None, _hex(32)),
    "TIMESTAMP": (None, _timestamp),
    "VERSION": (None, _version),
    "TRACKING": (None, _tracking),
    "PRIVATE_IP": (None, _private_ip),
    "BROKEN_CARD": (None, _broken_card),
    "BROKEN_IBAN": (None, _broken_iban),
    "AZURE_LOOKALIKE": (None, lambda r: (testkeys.azure_lookalike(), "key", "api_key")),
    "KEYGUARD_LOOKALIKE": (None, lambda r: (testkeys.keyguard_lookalike(), "key", "api_key")),
    "TESTCARD": (None, lambda r: (r.choice(["4242 4242 4242 4242", "4111111111111111",
                                            "5555 5555 5555 4444", "378282246310005",
                                            "4000 0566 5566 5556"]), "test card", "card")),
    "EPOCH": (None, lambda r: (str(r.randint(1_600_000_000, 1_800_000_000)), "epoch", "ts")),
    "FIRMWARE": (None, lambda r: (
        f"{r.randint(11, 99)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(1, 99)}", "firmware",
        "firmware")),
    "TRACEPARENT": (None, lambda r: (f"00-{_hexr(r, 32)}-{_hexr(r, 16)}-01", "traceparent",
                                     "traceparent")),
    "DIGEST": (None, lambda r: (f"sha256:{_hexr(r, 64)}", "image digest", "digest")),
}  # fmt: skip


def make(name: str, rng: random.Random) -> tuple[str | None, Made]:
    category, maker = GENERATORS[name]
    return category, maker(rng)
