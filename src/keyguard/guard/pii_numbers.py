"""Validated numbers: payment cards, IBANs and national identifiers.

Each kind is a shape (one bounded pattern) and a validation (``python-stdnum`` where it has
one): a card passes Luhn, an issuer's range and length and a plausible grouping; an IBAN
passes its country's length and format and mod-97; a national id passes its check digit or
letter and its structural rules. Kinds whose check is weak (an 11-digit German tax id, a
9-digit Dutch BSN, a 9-digit SSN without dashes) are only reported after a naming word
(``Steuer-ID``, ``BSN``, ``SSN``), and so are a National Insurance number or a DNI typed in
lower case (``ni: ab123456c``, ``dni 12345678z``). Published test cards and numbers named as
something else (``order``, ``invoice``, ``tracking``, ``ISBN``) are not reported. Example
values that pass every check (``DE89 3704 ...``, ``123-45-6789``, ``12345678Z``) are
reported: nothing tells them from a real one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from stdnum import iban, luhn
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

from keyguard.guard.context import WINDOW, inside_iban, named_before, named_otherwise
from keyguard.guard.findings import Match
from keyguard.guard.windows import Windows

__all__ = ["number_matches", "is_card"]

# Test numbers published by card networks and payment processors (never a person's card).
_TEST_CARDS = frozenset(
    {
        "4242424242424242", "4111111111111111", "4000056655665556", "5555555555554444",
        "2223003122003222", "5200828282828210", "5105105105105100", "378282246310005",
        "371449635398431", "6011111111111117", "6011000990139424", "3056930009020004",
        "36227206271667", "3566002020360505", "6200000000000005", "4012888888881881",
        "4222222222222", "5019717010103742", "4000000000000002", "4000000000009995",
        "378734493671000", "30569309025904", "38520000023237", "6011000400000000",
        "5431111111111111", "4917610000000000", "4444333322221111", "5454545454545454",
        "4005519200000004", "4009348888881881", "4012000033330026", "4012000077777777",
        "4217651111111119", "4500600000000061", "4000000000000077", "3530111333300000",
        "4988438843884305", "4166676667666746", "4646464646464644", "6011601160116611",
        "5425233430109903", "2222420000001113", "2223000048410010", "4263982640269299",
        # Adyen, Authorize.net, Checkout.com, Braintree and more of Stripe's documented numbers
        "4111111145551142", "5555341244441115", "2222400070000005", "370000000000002",
        "2222400010000008", "2222400030000004", "5577000055770004", "6703444444444449",
        "6011000000000012", "3088000000000017", "38000000000006", "4007000000027",
        "4012888818888", "5424000000000015", "4543474002249996", "5436031030606378",
        "345678901234564", "2223000048400011", "6304000000000000", "6011000991300009",
        "6243030000000001", "4000002500003155", "4000003800000446", "4000000000003220",
        "4000002760003184", "4000000000000093", "4000000000000127", "4000000000000069",
        "4000000000000119", "4000000000000341", "4100000000000019", "4000000000000101",
        "4000000000000036", "4000000000000028", "4000000000000010", "6011981111111113",
        "6205500000000000004", "4000000760000002", "4000001240000000", "4000004840008001",
        "4000000400000008",
    }
)  # fmt: skip
_EXAMPLE_IDS = frozenset({"078051120", "219099999"})  # published, never valid

_CARD = re.compile(r"(?<![\w.+/-])\d(?:[ -]?\d){11,18}(?![\w/-]|[.,]\d)")
# Grouped with dots: a pattern of its own, so that digits and dots after a card grouped with
# spaces (`4441 7476 6143 5540 1.2`) cannot take it into a longer, mixed candidate
_CARD_DOTS = re.compile(
    r"(?<![\w.+/-])\d{4}(?:(?:\.\d{4}){2,3}(?:\.\d{1,4})?|\.\d{6}\.\d{4,5})(?![\w/-]|[.,]\d)"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){10,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\w./-])\d{3}([- ])\d{2}\1\d{4}(?![\w/-]|[.,]\d)")
_DIGITS = re.compile(r"(?<![\w./+-])\d(?:[ .]?\d){8,14}(?![\w/-]|[.,]\d)")
_DNI = re.compile(r"(?<![\w-])(?:[XYZ]-?\d{7}|\d{8})-?[A-HJ-NP-TV-Z](?![\w-])")
_CF = re.compile(
    r"(?<![\w-])[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z]"
    r"[0-9LMNPQRSTUV]{3}[A-Z](?![\w-])"
)
_CF_LOWER = re.compile(_CF.pattern.replace("A-Z", "a-z").replace("LMNPQRSTUV", "lmnpqrstuv")
                       .replace("ABCDEHLMPRST", "abcdehlmprst"))  # fmt: skip
_NINO = re.compile(
    r"(?<![\w-])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![\w-])"
)
# Typed in lower case (``ab123456c``, ``12345678z``): reported after the id's name only.
_NINO_LOWER = re.compile(
    r"(?<![\w-])(?!bg|gb|kn|nk|nt|tn|zz)[a-ceghj-pr-tw-z][a-ceghj-npr-tw-z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[a-d](?![\w-])"
)
_DNI_LOWER = re.compile(r"(?<![\w-])(?:[xyz]-?\d{7}|\d{8})-?[a-hj-np-tv-z](?![\w-])")
# No look-behind in front: the search then skips to the names' first letters at C speed (the
# letter before a name is checked on each hit).
_NINO_NAMES = re.compile(r"(?i)(?:ni|nino|national insurance)(?![a-z])")
_DNI_NAMES = re.compile(r"(?i)(?:dni|nif|nie|documento)(?![a-z])")
_SSN_NAMES = re.compile(r"(?i)(?<![a-z])(?:ssn|social security(?: number| no\.?)?)(?![a-z])")
_DE_NAMES = re.compile(
    r"(?i)(?:steuer[-_ ]?id|steuer-?identifikationsnummer|identifikationsnummer|idnr|"
    r"steuernummer|\btax id|\btin\b)"
)
_FR_NAMES = re.compile(
    r"(?i)(?:(?<![a-z])nir(?![a-z])|s[ée]curit[ée] sociale|\binsee\b|carte vitale|\bsecu\b)"
)
_NL_NAMES = re.compile(r"(?i)(?<![a-z])(?:bsn|burgerservicenummer|sofi-?nummer)(?![a-z])")


def _issuer(d: str) -> bool:
    n, p2, p3, p4, p6 = len(d), int(d[:2]), int(d[:3]), int(d[:4]), int(d[:6])
    return (
        (d[0] == "4" and n in (13, 16, 19))
        or ((51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16)
        or (p2 in (34, 37) and n == 15)
        or ((p4 == 6011 or 644 <= p3 <= 649 or p2 == 65) and 16 <= n <= 19)
        or (3528 <= p4 <= 3589 and 16 <= n <= 19)
        or ((300 <= p3 <= 305 or p3 == 309 or p2 in (36, 38, 39)) and 14 <= n <= 19)
        or (p2 == 62 and 16 <= n <= 19)
        or (2200 <= p4 <= 2204 and n == 16)
        or ((p2 in (50, 56, 57, 58, 67) or p6 in (676770, 676774)) and 13 <= n <= 19)
    )


def _grouped(raw: str) -> bool:
    seps = {c for c in raw if c in " -."}
    if not seps:
        return True
    if len(seps) > 1:
        return False
    groups = [len(g) for g in raw.split(seps.pop())]
    if groups in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4 and len(groups) >= 4


def is_card(raw: str) -> bool:
    """True for a payment card number as written (separators included)."""
    digits = raw.replace(" ", "").replace("-", "").replace(".", "")
    if not 13 <= len(digits) <= 19 or digits in _TEST_CARDS or len(set(digits)) < 4:
        return False
    return _grouped(raw) and _issuer(digits) and luhn.is_valid(digits)


def _cards(text: str, lo: int, hi: int) -> Iterator[Match]:
    for pattern in (_CARD, _CARD_DOTS):
        for m in pattern.finditer(text, lo, hi):
            start = m.start()
            if is_card(m.group()) and not (
                named_otherwise(text, start) or inside_iban(text, start)
            ):
                yield Match("personal", "payment_card", "payment_card", m.start(), m.end())


def _ibans(text: str, lo: int, hi: int) -> Iterator[Match]:
    for m in _IBAN.finditer(text, lo, hi):
        raw = m.group()
        for _ in range(4):  # trailing upper-case words may have been taken in: drop them
            compact = raw.replace(" ", "").replace("-", "").upper()
            if iban.is_valid(compact):
                yield Match("personal", "iban", "iban", m.start(), m.start() + len(raw))
                break
            if " " not in raw:
                break
            raw = raw.rsplit(" ", 1)[0]


def _ssns(text: str, lo: int, hi: int) -> Iterator[Match]:
    for m in _SSN.finditer(text, lo, hi):
        compact = m.group().replace("-", "").replace(" ", "")
        if compact not in _EXAMPLE_IDS and ssn.is_valid(compact):
            yield Match("personal", "us_ssn", "us_ssn", m.start(), m.end())


_NAMED_DIGITS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool], int], ...] = (
    ("us_ssn", _SSN_NAMES, lambda d: len(d) == 9 and ssn.is_valid(d), 9),
    ("de_tax_id", _DE_NAMES, lambda d: len(d) == 11 and idnr.is_valid(d), 11),
    ("nl_bsn", _NL_NAMES, lambda d: len(d) == 9 and bsn.is_valid(d), 9),
    ("fr_nir", _FR_NAMES, lambda d: len(d) == 15 and nir.is_valid(d), 15),
)


def _named_ids(text: str, lo: int, hi: int) -> Iterator[Match]:
    for m in _DIGITS.finditer(text, lo, hi):
        compact = m.group().replace(" ", "").replace(".", "")
        if compact in _EXAMPLE_IDS:
            continue
        for category, names, valid, length in _NAMED_DIGITS:
            if len(compact) == length and valid(compact) and named_before(text, m.start(), names):
                yield Match("personal", category, category, m.start(), m.end())
                break


def _after_names(
    text: str, lo: int, hi: int, names: re.Pattern[str], firsts: str, pattern: re.Pattern[str]
) -> Iterator[re.Match[str]]:
    """``pattern``'s matches within ``WINDOW`` characters after one of ``names`` (names are
    rare: the text is not searched for the pattern everywhere), whose first letters are
    ``firsts`` (a window of digits without them is passed over at C speed)."""
    if all(text.find(c, lo, hi) < 0 for c in firsts):
        return
    last = -1
    for n in names.finditer(text, lo, hi):
        if n.start() > 0 and text[n.start() - 1].isascii() and text[n.start() - 1].isalpha():
            continue  # inside a word (``uni``, ``Denis``)
        # the value starts in the window; 20 more characters let it end inside the search
        m = pattern.search(text, max(n.end(), last), min(len(text), n.end() + WINDOW + 20))
        if m is not None and m.start() <= n.end() + WINDOW:
            last = m.end()
            yield m


def _spanish(text: str, lo: int, hi: int) -> Iterator[Match]:
    lower = _after_names(text, lo, hi, _DNI_NAMES, "dDnN", _DNI_LOWER)
    for m in (*_DNI.finditer(text, lo, hi), *lower):
        compact = m.group().replace("-", "").upper()
        if compact in _EXAMPLE_IDS:
            continue
        if compact[0] in "XYZ":
            if nie.is_valid(compact):
                yield Match("personal", "es_nie", "es_nie", m.start(), m.end())
        elif len(set(compact[:8])) > 2 and dni.is_valid(compact):
            yield Match("personal", "es_dni", "es_dni", m.start(), m.end())


def _italian(text: str, starts: list[int]) -> Iterator[Match]:
    for start in starts:
        m = _CF.match(text, start) or _CF_LOWER.match(text, start)
        if m is not None and codicefiscale.is_valid(m.group().upper()):
            yield Match("personal", "it_fiscal_code", "it_fiscal_code", m.start(), m.end())


def _ninos(text: str, lo: int, hi: int) -> Iterator[Match]:
    for m in _NINO.finditer(text, lo, hi):
        yield Match("personal", "gb_nino", "gb_nino", m.start(), m.end())
    for m in _after_names(text, lo, hi, _NINO_NAMES, "nN", _NINO_LOWER):
        yield Match("personal", "gb_nino", "gb_nino", m.start(), m.end())


def number_matches(text: str, windows: Windows, codes: list[int]) -> Iterator[Match]:
    """Cards, IBANs and national ids in the ``windows`` of ``text`` and Italian fiscal codes
    at ``codes`` (``keyguard.guard.windows``); overlaps are left to the caller."""
    for lo, hi in windows:
        for detector in (_cards, _ibans, _ssns, _named_ids, _spanish, _ninos):
            yield from detector(text, lo, hi)
    yield from _italian(text, codes)
