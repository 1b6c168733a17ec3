"""Fresh, valid test values for the guardrails' fixtures and labelled corpus: personal data
that passes its checks (card Luhn and issuer, IBAN mod-97, national id check digits, phone
numbers valid in their region) and the secret formats ``keyguard.scan.testkeys`` lacks.

Every value is made at run time from the given ``random.Random``, so nothing resembling a
real person's data or a real credential is ever committed.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import string

import phonenumbers
from stdnum import iban, luhn
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.iso7064 import mod_11_10
from stdnum.it import codicefiscale
from stdnum.nl import bsn

__all__ = [
    "card", "iban_number", "ssn", "de_tax_id", "es_dni", "es_nie", "it_fiscal_code", "nl_bsn",
    "gb_nino", "fr_nir", "email", "phone", "public_ip", "token",
]  # fmt: skip


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def card(rng: random.Random, brand: str = "visa", sep: str = " ") -> str:
    prefix, length = {
        "visa": ("4", 16), "mastercard": ("5" + rng.choice("12345"), 16),
        "mc2": (str(rng.randint(2221, 2720)), 16), "amex": (rng.choice(["34", "37"]), 15),
        "discover": ("6011", 16), "jcb": (str(rng.randint(3528, 3589)), 16),
    }[brand]  # fmt: skip
    body = prefix + _digits(rng, length - len(prefix) - 1)
    number = body + luhn.calc_check_digit(body)
    if not sep:
        return number
    groups = [4, 6, 5] if length == 15 else [4, 4, 4, 4]
    out, pos = [], 0
    for g in groups:
        out.append(number[pos : pos + g])
        pos += g
    return sep.join(out)


_BBAN = {"DE": ("n", 18), "FR": ("n", 23), "NL": ("a4n", 14), "ES": ("n", 20), "IT": ("a1n", 23),
         "GB": ("a4n", 18), "BE": ("n", 12), "AT": ("n", 16), "CH": ("n", 17)}  # fmt: skip


def iban_number(rng: random.Random, country: str = "DE", spaced: bool = True) -> str:
    kind, length = _BBAN[country]
    if kind == "n":
        bban = _digits(rng, length)
    else:
        letters = int(kind[1])
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(letters))
        bban += _digits(rng, length - letters)
    if country == "FR":
        bban = bban[:21] + f"{97 - int(bban[:21] + '00') % 97:02d}"
    number = country + "00" + bban
    check = iban.calc_check_digits(number)
    number = country + check + bban
    if not iban.is_valid(number):
        return iban_number(rng, country, spaced)
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4)) if spaced else number


def ssn(rng: random.Random, sep: str = "-") -> str:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


def de_tax_id(rng: random.Random) -> str:
    while True:
        digits = [rng.choice("123456789")] + [rng.choice(string.digits) for _ in range(9)]
        body = "".join(digits)
        counts = sorted((body.count(d) for d in set(body)), reverse=True)
        if counts[0] in (2, 3) and counts.count(1) >= 10 - counts[0] - 1:
            number = body + mod_11_10.calc_check_digit(body)
            if idnr.is_valid(number):
                return number


def es_dni(rng: random.Random) -> str:
    body = _digits(rng, 8)
    return body + dni.calc_check_digit(body)


def es_nie(rng: random.Random) -> str:
    body = rng.choice("XYZ") + _digits(rng, 7)
    return body + nie.calc_check_digit(body)


def it_fiscal_code(rng: random.Random) -> str:
    letters = "".join(rng.choice("BCDFGHLMNPRSTVZ") for _ in range(6))
    body = (
        letters + _digits(rng, 2) + rng.choice("ABCDEHLMPRST") + f"{rng.randint(1, 28):02d}"
        + rng.choice("ABCDEFGHILM") + _digits(rng, 3)
    )  # fmt: skip
    return body + codicefiscale.calc_check_digit(body)


def nl_bsn(rng: random.Random) -> str:
    while True:
        body = rng.choice("123456789") + _digits(rng, 7)
        for last in string.digits:
            if bsn.is_valid(body + last):
                return body + last


def gb_nino(rng: random.Random) -> str:
    first = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    second = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    if first + second in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
        return gb_nino(rng)
    d = _digits(rng, 6)
    return f"{first}{second} {d[:2]} {d[2:4]} {d[4:]} {rng.choice('ABCD')}"


def fr_nir(rng: random.Random) -> str:
    body = (
        rng.choice("12") + _digits(rng, 2) + f"{rng.randint(1, 12):02d}"
        + f"{rng.randint(1, 95):02d}" + _digits(rng, 6)
    )  # fmt: skip
    key = 97 - int(body) % 97
    return f"{body[0]} {body[1:3]} {body[3:5]} {body[5:7]} {body[7:10]} {body[10:13]} {key:02d}"


_FIRST = (
    "anna ben carla dmitri elif farid greta hiro ines jonas kemal lena marek nadia omar".split()
)
_LAST = "berger costa dubois eriksen fischer garcia horvat ivanova jansen kowalski".split()
_DOMAINS = "contoso.com fabrikam.io northwind.de tailspin.fr wingtiptoys.co.uk adatum.nl".split()


def email(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    local = rng.choice(
        [f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randint(1, 99)}"]
    )
    return f"{local}@{rng.choice(_DOMAINS)}"


def phone(rng: random.Random, region: str = "GB", international: bool = True) -> str:
    """A number valid in ``region`` (outside the ranges reserved for fiction)."""
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    nsn = phonenumbers.national_significant_number(example)
    for _ in range(1000):
        digits = nsn[:3] + _digits(rng, len(nsn) - 3)
        number = phonenumbers.parse("+" + str(example.country_code) + digits, None)
        if phonenumbers.is_valid_number(number) and "1234567" not in digits:
            fmt = (
                phonenumbers.PhoneNumberFormat.INTERNATIONAL
                if international
                else phonenumbers.PhoneNumberFormat.NATIONAL
            )
            return phonenumbers.format_number(number, fmt)
    raise RuntimeError(f"no valid number found for {region}")


def public_ip(rng: random.Random, version: int = 4) -> str:
    while True:
        if version == 4:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(
                rng.getrandbits(32)
            )
        else:
            address = ipaddress.IPv6Address((0x2A00 << 112) | rng.getrandbits(112))
        if address.is_global and not address.is_multicast:  # 224/4 counts as global
            return str(address).replace(":0:", "::", 1) if version == 6 else str(address)


_ALNUM = string.ascii_letters + string.digits
_B32 = string.ascii_uppercase + "234567"


def _r(rng: random.Random, n: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _pem(rng: random.Random, label: str, lines: int = 12, sep: str = "\n") -> str:
    body = sep.join(base64.b64encode(rng.randbytes(48)).decode() for _ in range(lines))
    return f"-----BEGIN {label}PRIVATE KEY-----{sep}{body}{sep}-----END {label}PRIVATE KEY-----"


def token(rng: random.Random, kind: str) -> str:
    """A fresh token of ``kind`` (``aws_access_key``, ``github_token``, ``private_key``, ...)."""
    makers = {
        "aws_access_key": lambda: "AKIA" + _r(rng, 16, _B32),
        "aws_secret_key": lambda: _r(rng, 40, _ALNUM + "/+"),
        "google_api_key": lambda: "AIza" + _r(rng, 35, _ALNUM + "-_"),
        "github_token": lambda: rng.choice(["ghp_", "gho_", "ghs_"]) + _r(rng, 36),
        "github_pat": lambda: "github_pat_" + _r(rng, 22) + "_" + _r(rng, 59),
        "gitlab_token": lambda: "glpat-" + _r(rng, 20, _ALNUM + "-_"),
        "slack_token": lambda: f"xoxb-{_digits(rng, 11)}-{_digits(rng, 12)}-{_r(rng, 24)}",
        "slack_webhook": lambda: (
            f"https://hooks.slack.com/services/T{_r(rng, 8, _B32)}/"
            f"B{_r(rng, 10, _B32)}/{_r(rng, 24)}"
        ),
        "stripe_key": lambda: rng.choice(["sk_live_", "rk_live_"]) + _r(rng, 24),
        "npm_token": lambda: "npm_" + _r(rng, 36),
        "huggingface_token": lambda: "hf_" + _r(rng, 34),
        "anthropic_key": lambda: "sk-ant-api03-" + _r(rng, 93, _ALNUM + "-_") + "AA",
        "sendgrid_key": lambda: f"SG.{_r(rng, 22, _ALNUM + '-_')}.{_r(rng, 43, _ALNUM + '-_')}",
        "private_key": lambda: _pem(rng, rng.choice(["", "RSA ", "EC ", "OPENSSH "]), sep="\n"),
        "db_password": lambda: _r(rng, 18, _ALNUM + "!*_"),
    }
    return makers[kind]()
