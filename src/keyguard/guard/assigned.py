"""Secrets recognised by the name they are assigned to, not by their shape: a password or an
API secret in a config file, an ``.env`` line, a JSON or YAML document pasted into a prompt.

Prompt-only (``keyguard scan`` leaves generic values to the formats it knows): a value
(``name: value``, ``name = value``, ``name string = value``, ``<name>value</name>``,
``<add key="name" value="value" />``) is
reported when its name says it is a password (``password``, ``passwd``, ``pwd``) or a secret
(``secret``, ``client_secret``, ``api_key``, ``access_token``, ``auth_token``, ...) and the
value looks like one: long enough, more than one kind of character, not a placeholder
(``changeme``, ``<password>``, ``${DB_PASSWORD}``, ``***``), not a URL without credentials (a
connection string's ``Endpoint=sb://...``), not a reference to where the secret lives
(``os.environ[...]``, ``process.env.X``, ``@Microsoft.KeyVault(...)``, ``secretKeyRef``), not
a look-alike of a format with a checksum (an 84-character Azure key or a ``kgk_`` key that
fails it), and, for secrets, random enough (entropy). Shaped kinds found by the
scanner's detectors win over these on overlap.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

from keyguard.azure_keys import IDENTIFIABLE_KEY_PATTERN
from keyguard.guard.findings import Match
from keyguard.keys.format import KEY_PATTERN
from keyguard.scan.placeholders import entropy, is_placeholder

__all__ = ["assigned_secrets"]

_KINDS = (
    "password", "passwd", "pwd", "pass", "secret", "api_key", "api-key", "apikey",
    "access_token", "access-token", "accesstoken", "auth_token", "auth-token", "authtoken",
    "token", "private_key", "private-key", "privatekey", "secret_key", "secret-key",
    "secretkey", "client_secret", "client-secret", "clientsecret",
)  # fmt: skip
_IDENT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
# A quote may carry a prefix: T-SQL's N'...', C#'s @"...", C++'s L"...", Python's r'...' / u'...'
# YAML may put an anchor or a tag first (`password: &pw "..."`, `!!str`); TOML triple quotes
_VALUE = re.compile(
    r"[=>]?\s{0,8}(?:[&!][\w!-]{0,32}[ \t]+)?"
    r"(?:[NLru@]?(?:\"\"\"|'''|[\"']))?([^\s\"',;`]{6,128})"
)
_TYPED = re.compile(r"([A-Za-z_][\w.-]*)[ \t]*:?[ \t]*(?i:securestring|string|str)[ \t]*\Z")
_ATTRIBUTE = re.compile(
    r"""(?i)\b(?:key|name)[ \t]*=[ \t]*["']([\w.:-]{1,64})["'][ \t]+value[ \t]*\Z"""
)
_XML_VALUE = re.compile(r"([^<>\s]{6,128})</([A-Za-z_][\w.-]{0,63})>")  # <password>v</password>
_REFERENCE = re.compile(
    r"(?i)^(?:\$|%|<|\{|\[|@microsoft\.keyvault|process\.env|os\.environ|os\.getenv|env\(|"
    r"secret[s]?\.|vault:|secretkeyref|valuefrom|none$|null$|true$|false$|undefined$|"
    r"required$|optional$|string$|str$|bytes$|self\.|this\.|config\.|settings\.|args\.)"
)
_PLACEHOLDER_WORDS = re.compile(
    r"(?i)^(?:pass(?:word|wd)?\d*|changeme|change_me|secret\d*|admin\d*|root|test\d*|guest|"
    r"default|example|sample|dummy|placeholder|redacted|hidden|masked|notset|not_set|"
    r"mypassword|yourpassword|my_password|your_password|password123|p@ssw0rd|qwerty\d*|"
    r"letmein|xxx+|\*+|\.+|…+|todo|tbd|fixme)$"
)
_IDENTIFIER_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\(\))?$")
_PASSWORD_KINDS = ("passw", "pwd", "pass")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}\Z")


def _classes(value: str) -> int:
    return (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )


def _base64_text(value: str) -> str | None:
    """The printable text ``value`` is the base64 of, if it is (``Y2hhbmdlbWU=``: changeme)."""
    if len(value) % 4 or not _BASE64.match(value):
        return None
    try:
        text = base64.b64decode(value, validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    return text if text.isprintable() else None


def _checksummed_shape(value: str) -> bool:
    """A value in a format with a checksum (an Azure identifiable key, a Keyguard key): the
    scanner's detector reports it when the checksum holds; a look-alike is no secret."""
    if len(value) < 54:  # the shorter of the two (``kgk_`` and 50 characters)
        return False
    return bool(IDENTIFIABLE_KEY_PATTERN.fullmatch(value) or KEY_PATTERN.fullmatch(value))


def _looks_secret(kind: str, value: str) -> bool:
    if value.startswith(("=", ":")):
        return False
    if _REFERENCE.match(value) or _PLACEHOLDER_WORDS.match(value):
        return False
    if _IDENTIFIER_PATH.match(value) or "(" in value or value.endswith(("_KEY", "_SECRET")):
        return False
    if "://" in value and "@" not in value:
        return False  # an endpoint (Endpoint=sb://...): its key, if any, is a shaped kind
    if is_placeholder(value) or _checksummed_shape(value):
        return False
    decoded = _base64_text(value)
    if decoded is not None and (
        _PLACEHOLDER_WORDS.match(decoded) or _REFERENCE.match(decoded) or is_placeholder(decoded)
    ):
        return False  # a Kubernetes Secret's `data:` holds its values base64-encoded
    if kind.startswith(_PASSWORD_KINDS):
        return len(value) >= 8 and _classes(value) >= 3
    return len(value) >= 16 and _classes(value) >= 2 and entropy(value) >= 3.5


def _kind(text: str, sep: int) -> str | None:
    """The secret kind the name just before the separator at ``sep`` ends with, if any."""
    end = sep
    while end > 0 and sep - end < 3 and text[end - 1] in "\"' \t":
        end -= 1
    start = end
    while start > 0 and end - start < 64 and text[start - 1] in _IDENT:
        start -= 1
    return _name_kind(text[start:end])


def _attribute_kind(text: str, sep: int) -> str | None:
    """The kind of ``<add key="SmtpPassword" value="...">`` (.NET ``appSettings``, XML
    properties): the name is the ``key`` or ``name`` attribute before ``value=``."""
    if not text[max(0, sep - 8) : sep].rstrip().lower().endswith("value"):
        return None
    m = _ATTRIBUTE.search(text, max(0, sep - 96), sep)
    return _name_kind(m.group(1)) if m is not None else None


def _name_kind(name: str) -> str | None:
    lowered = name.lower()
    for kind in _KINDS:
        if lowered.endswith(kind):
            at = len(name) - len(kind)
            if at == 0 or name[at - 1] in "_.-" or (name[at].isupper() and name[at - 1].islower()):
                return kind
            if kind in ("password", "passwd"):
                return kind  # glued on: T-SQL's @rmtpassword, dbpassword (not so `pass`: bypass)
    return None


def _typed_kind(text: str, sep: int) -> str | None:
    """The kind of ``name string = value`` / ``name: string = value`` (Bicep, Go, TypeScript):
    the name before a string type."""
    if not text[max(0, sep - 16) : sep].rstrip().lower().endswith(("string", "str")):
        return None
    m = _TYPED.search(text, max(0, sep - 96), sep)
    return _kind(text, m.end(1)) if m is not None else None


def _xml_value(text: str, pos: int) -> re.Match[str] | None:
    """The value of ``<name>value</name>`` whose opening tag ends at ``pos``, if it is one."""
    m = _XML_VALUE.match(text, pos + 1)
    if m is None:
        return None
    tag = m.group(2)
    return m if text.startswith("<" + tag, pos - len(tag) - 1) else None


def assigned_secrets(text: str) -> Iterator[Match]:
    """Values assigned to a password- or secret-like name in ``text``.

    A ``:`` or ``=`` inside a value already read (``password=abc=def``) is part of that value,
    not a new assignment: text dense with separators has each character judged about once,
    not once per separator within a value's reach (128 characters)."""
    lowered = text.lower()
    if not any(word in lowered for word in ("pass", "pwd", "secret", "key", "token")):
        return
    read_to = 0  # the end of the last value read after a ':' or '='
    for sep in _SEPARATOR.finditer(text):
        pos = sep.start()
        if pos < read_to:
            continue
        kind = _kind(text, pos) if pos > 0 else None
        if kind is None and pos > 0 and sep.group() == "=":
            kind = _typed_kind(text, pos) or _attribute_kind(text, pos)
        if kind is not None:
            m = _VALUE.match(text, pos + 1)
            if m is not None:
                read_to = m.end(1)
                yield from _judged(kind, m)
    pos = text.find(">")
    while pos != -1:
        kind = _kind(text, pos) if pos > 0 else None
        if kind is not None:
            m = _xml_value(text, pos)
            if m is not None:
                yield from _judged(kind, m)
        pos = text.find(">", pos + 1)


_SEPARATOR = re.compile(r"[:=]")


def _judged(kind: str, m: re.Match[str]) -> Iterator[Match]:
    """The value of ``m`` (its first group) when it looks like a secret of ``kind``."""
    value = m.group(1).rstrip(".)")
    if _looks_secret(kind, value):
        category = "password" if kind.startswith(_PASSWORD_KINDS) else "named_secret"
        start = m.start(1)
        yield Match("secret", category, f"{category}/assigned", start, start + len(value))
