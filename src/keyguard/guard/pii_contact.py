"""Contact data: e-mail addresses, phone numbers and public IP addresses.

* **E-mail**: found from each ``@``; not reported for the reserved documentation domains
  (``example.com``/``.net``/``.org`` and their subdomains, ``.example``, ``.test``,
  ``.invalid``, ``.localhost``), for ``user@host:path/...`` (an scp/git remote), for a
  ``scheme://user:password@host`` URL's user part, or when the "top-level domain" is a file
  extension (``logo@2x.png``). A colon alone does not make a remote or a URL: ``Mail from
  a@b.com:``, ``mailto:a@b.com``, ``EMAIL:a@b.com`` (vCard), ``curl -u a@b.com:TOKEN``.
* **Phone**: parsed and validated with ``phonenumbers``. A number written with its country
  code (``+44 ...``, ``0049 ...``) is read as such; a national number is read in the
  configured regions whose trunk prefix it has (``0`` for GB, DE, FR, NL; none for US, ES,
  IT), and only when it is written with separators (``(415) 555-2671``, ``030 1234 5678``,
  ``0151/2345678``) or named (``phone``, ``tel``, ``mobile``, ...); it is reported when valid
  in one of them. Unnamed, a national number without a trunk prefix must start as such
  numbers are written (a 3-digit group, or ``1`` and one: ``2026-11-4471`` and an EIN
  ``84-3920114`` are not), and a ``00`` number needs separators (``0012345678905`` is a barcode).
  Dates, times, IP addresses, version strings, ISBNs, numbers named as order or invoice
  numbers, and the ranges reserved for fiction (US 555-01xx, Ofcom's drama ranges) are not
  reported.
* **IP address**: IPv4 and IPv6, reported only when globally routable: private, loopback,
  link-local, shared (CGNAT), multicast, reserved and documentation ranges (192.0.2.0/24,
  198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are not personal data of anyone. A dotted
  quad after ``version``/``v``/``firmware``/``kernel``/``iOS``/a product name and a slash is
  a version string.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Iterator, Sequence

import phonenumbers
from stdnum import isbn

from keyguard.guard.context import inside_iban, named_before, named_otherwise
from keyguard.guard.findings import Match
from keyguard.guard.windows import Windows

__all__ = ["MAX_PHONE_CANDIDATES", "contact_matches"]

MAX_PHONE_CANDIDATES = 256  # phone candidates parsed per text (phonenumbers is the costly step)
MAX_PHONE_SEEN = 4096  # candidates looked at per text (most are refused before parsing: dates)

_LOCAL_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~.-")
# Letters and digits of any script (``jürgen@müller.de``: internationalised addresses)
_LOCAL = re.compile(r"[\w!#$%&'*+/=?^`{|}~.-]{1,64}\Z")
# The top-level domain: letters, or an internationalised one in its ASCII form (``xn--p1ai``)
_DOMAIN = re.compile(
    r"(?:[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?\.){1,8}([^\W\d_]{2,24}|[xX][nN]--[a-zA-Z0-9]{2,59})(?![\w-])"
)
_RESERVED = re.compile(
    r"(?i)(?:^|\.)(?:example\.(?:com|net|org)|example|test|invalid|localhost|local|"
    r"gserviceaccount\.com|users\.noreply\.github\.com)$|"
    r"^(?:yourdomain|yourcompany|your-company|your-domain)\.com$"
)
_FILE_TLDS = frozenset(
    "png jpg jpeg gif svg webp ico bmp tiff css js mjs ts tsx jsx map json yaml yml xml html "
    "htm md txt py rb go rs java kt swift php sh zip gz tar pdf mp4 mp3 wav woff woff2 ttf lock "
    "min".split()
)
_REMOTE_PATH = re.compile(r":[\w~.-]*/")  # git@github.com:org/repo, host:~/dir/file
_URL_USER = re.compile(r"://[^\s/@]*:\Z")  # https://user:password@host


def _not_an_address(text: str, start: int, end: int) -> bool:
    """The ``local@domain`` at ``start:end`` is a URL's password and host, or a remote."""
    before = text[start - 1] if start > 0 else ""
    if before == "/" or (before == ":" and _URL_USER.search(text, max(0, start - 256), start)):
        return True
    return text.startswith(":", end) and _REMOTE_PATH.match(text, end) is not None


def _emails(text: str) -> Iterator[Match]:
    pos = text.find("@")
    while pos != -1:
        nxt = text.find("@", pos + 1)
        before = text[pos - 1] if pos else " "
        if (before not in _LOCAL_CHARS and not before.isalnum()) or pos + 1 >= len(text):
            pos = nxt
            continue
        local = _LOCAL.search(text, max(0, pos - 64), pos)
        domain = _DOMAIN.match(text, pos + 1)
        if local is not None and domain is not None:
            start = local.start()
            query = text.rfind("?", start, pos)
            if query != -1:  # a URL's query string: ?email=a@b.com&... (the address after `=`)
                start = max(query, text.rfind("=", query, pos), text.rfind("&", query, pos)) + 1
            while start < pos and text[start] in ".'`{|}~=/":
                start += 1
            end = domain.end()
            tld = domain.group(1).lower()
            host = domain.group().lower()
            if (
                start < pos
                and tld not in _FILE_TLDS
                and _RESERVED.search(host) is None
                and not _not_an_address(text, start, end)
            ):
                yield Match("personal", "email", "email", start, end)
        pos = nxt


_PHONE = re.compile(
    r"(?<![\w+@/.#$-])(?:\+|00)?\(?\d(?:[\d \t().-]{5,22}|\d{1,5}/[\d \t().-]{3,20})\d\)?"
    r"(?!(?!x\d)[\w@/-]|[.,:]\d)"  # an extension may follow: 212-718-4402x15
    r"|(?<=/)\+\d{7,15}(?=[/?#&\s\"']|\Z)"  # E.164 as a URL's path segment: /numbers/+4930.../
)
_GROUPS = re.compile(r"\d+")
_PHONE_NAMES = re.compile(
    r"(?i)(?:phone|tel\b|telephone|mobile|cell|fax|whatsapp|sms|call|text me|reach me|"
    r"ring (?:me|us)|t[ée]l[ée]phone|telefon|handy|m[óo]vil|cellulare|contact)"
)
_DATE = re.compile(
    r"^(?:\d{4}[-./ ]\d{1,2}[-./ ]\d{1,2}|\d{1,2}[-./ ]\d{1,2}[-./ ]\d{2,4})(?:[ T]\d{1,2})?$"
)
_SSN_SHAPE = re.compile(r"^\d{3}([- ])\d{2}\1\d{4}$")
_DOTTED = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_FICTION = {
    "US": ("55501",),
    "GB": (
        "7700900", "2079460", "1134960", "1144960", "1154960", "1164960", "1174960", "1184960",
        "1214960", "1314960", "1414960", "1514960", "1614960", "1632960", "2890180", "2920180",
        "3069990", "8081570", "9098790",
    ),
}  # fmt: skip


def _fictional(number: phonenumbers.PhoneNumber, region: str | None = None) -> bool:
    region = region or phonenumbers.region_code_for_number(number)
    nsn = phonenumbers.national_significant_number(number)
    if region in ("US", "CA") and (nsn[3:8] == "55501" or nsn[:3] == "555"):
        return True
    return any(nsn.startswith(p) for p in _FICTION.get(region or "", ()))


def _shaped(raw: str) -> str | None:
    """The digits of ``raw`` when it is shaped like a phone number (no date, time, IP, SSN,
    version or ISBN): what can be told without its context or a parse."""
    digits = "".join(c for c in raw if c.isdigit())
    if not 7 <= len(digits) <= 15 or len(set(digits)) < 3:
        return None
    if _DATE.match(raw) or _DOTTED.match(raw) or _SSN_SHAPE.match(raw):
        return None
    if "." in raw and raw[0] != "+" and any(len(g) == 1 for g in re.split(r"[^\d]+", raw) if g):
        return None  # a version string (10.0.19041.1); +33.6.12.34.56.78 is a number
    if len(digits) in (10, 13) and raw.count("-") >= 3 and isbn.is_valid(digits):
        return None
    return digits


def _valid_phone(
    raw: str, digits: str, regions: Sequence[str], named: bool, budget: list[int]
) -> bool:
    """Whether ``raw`` (:func:`_shaped`) is a phone number; ``budget[0]`` is taken one from
    when it is parsed."""
    international = raw.startswith(("+", "00"))
    if not named and raw.isdigit():
        return False
    trunk = "0" if digits.startswith("0") else None
    if "/" in raw and (trunk is None or international):
        return False  # 0151/2345678: after a trunk-0 area code only
    if trunk is None and not named and not international:
        groups = _GROUPS.findall(raw)
        if len(groups[0]) != 3 and not (groups[0] == "1" and len(groups[1]) == 3):
            return False
    if budget[0] <= 0:
        return False
    budget[0] -= 1
    if international:
        return _valid_in(_parse("+" + raw[2:] if raw.startswith("00") else raw, None))
    valid = False
    for region in regions:
        if _trunk_prefix(region) != trunk:
            continue
        number = _parse(raw, region)
        if number is None:
            continue
        if _fictional(number, region):
            return False  # a range reserved for fiction in a region it may be written for
        valid = valid or phonenumbers.is_valid_number(number)
    return valid


def _parse(raw: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None


def _valid_in(number: phonenumbers.PhoneNumber | None) -> bool:
    return number is not None and phonenumbers.is_valid_number(number) and not _fictional(number)


def _trunk_prefix(region: str) -> str | None:
    """``"0"`` for regions whose national numbers start with a trunk 0 (GB, DE, FR), else
    ``None`` (US, CA: no trunk 0; ES, IT: none at all)."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return "0" if meta is not None and meta.national_prefix == "0" else None


def _phones(
    text: str, lo: int, hi: int, regions: Sequence[str], budget: list[int]
) -> Iterator[Match]:
    """Phone numbers in ``text[lo:hi]``; ``budget[0]`` candidates at most are parsed (the
    costly step) and ``budget[1]`` looked at, so a text of digit groups cannot make one scan
    slow, and a long log's dates do not use up the parses a phone number at its end needs."""
    for m in _PHONE.finditer(text, lo, hi):
        if budget[0] <= 0 or budget[1] <= 0:
            return
        budget[1] -= 1
        raw = m.group().strip()
        if raw.count("(") != raw.count(")"):
            raw = raw.strip("()")
        digits = _shaped(raw)
        if digits is None:
            continue
        start = m.start() + m.group().index(raw)
        if named_otherwise(text, start) or inside_iban(text, start):
            continue
        named = named_before(text, start, _PHONE_NAMES)
        if _valid_phone(raw, digits, regions, named, budget):
            yield Match("personal", "phone", "phone", start, start + len(raw))


_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_VERSION_WORD = (  # not after ://
    r"(?i)(?:version|\bv|\bver\.?|release|build|firmware|\bfw|kernel|bios|driver|\bi?os|"
    r"android|(?<!/)/)"
)
_VERSION = re.compile(_VERSION_WORD + r"(?:\s+(?:is|was|to|now))?[\s:=]*$")  # "kernel is 5.1.0.1"
# "the firmware from 81.2.69.16" names the address it came from; "from 5.4.0.42 to 5.15.0.105"
# is a version's
_VERSION_FROM = re.compile(_VERSION_WORD + r"\s+from\s+$")
_TO_VERSION = re.compile(r"\s+to\s+v?\d")


def _ipv4(text: str, lo: int, hi: int) -> Iterator[Match]:
    for m in _IPV4.finditer(text, lo, hi):
        before = max(0, m.start() - 20)
        if _VERSION.search(text, before, m.start()) or (
            _TO_VERSION.match(text, m.end()) and _VERSION_FROM.search(text, before, m.start())
        ):
            continue
        try:
            address = ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        if address.is_global and not address.is_multicast:
            yield Match("personal", "ip_address", "ipv4", m.start(), m.end())


_HEX_COLON = frozenset("0123456789abcdefABCDEF:")
_IPV6_MAX = 45


def _ipv6(text: str) -> Iterator[Match]:
    """Runs of hex digits and at least two colons, around each colon, parsed as IPv6. A
    colon's run reaches at most ``_IPV6_MAX`` characters back and ahead within the maximal
    run of hex digits and colons that holds it (found once, by one search per run: walking
    it per colon read a line of colons some forty times over)."""
    for whole in _HEX_COLON_RUN.finditer(text):
        lo, hi = whole.span()
        pos = text.find(":", lo, hi)
        while pos != -1:
            start = max(lo, pos - _IPV6_MAX)
            end = min(hi, max(pos + 1, start + _IPV6_MAX))
            run = text[start:end]
            if run.count(":") >= 2 and (start == 0 or not _joins(text[start - 1])):
                after = text[end : end + 2]
                if not after or not (_joins(after[0]) and (after[0] != "." or after[1:].isalnum())):
                    try:
                        address = ipaddress.IPv6Address(run)
                    except ValueError:
                        address = None
                    if (
                        address is not None
                        and address.is_global
                        and not address.is_multicast
                        and address.ipv4_mapped is None
                    ):
                        yield Match("personal", "ip_address", "ipv6", start, end)
            pos = text.find(":", max(end, pos + 1), hi)


_HEX_COLON_RUN = re.compile(r"[0-9a-fA-F:]+")


def _joins(c: str) -> bool:
    return c.isalnum() or c in "_.:"


def contact_matches(
    text: str,
    windows: Windows,
    regions: Sequence[str],
    *,
    emails: bool = True,
    ipv6: bool = True,
) -> Iterator[Match]:
    """E-mail addresses in ``text``, phone numbers and IPv4 addresses in its ``windows``
    (``keyguard.guard.windows``), public IPv6 addresses (``emails`` / ``ipv6`` false: the
    caller knows there are none, :mod:`keyguard.guard.gate`)."""
    if emails and "@" in text:
        yield from _emails(text)
    budget = [MAX_PHONE_CANDIDATES, MAX_PHONE_SEEN]
    for lo, hi in windows:
        yield from _phones(text, lo, hi, regions, budget)
        yield from _ipv4(text, lo, hi)
    if ipv6:
        yield from _ipv6(text)
