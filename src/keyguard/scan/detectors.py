"""Detectors: one per credential kind, each anchored on a cheap literal, then validated.

Literal anchors (``str.find``, memchr-fast) keep the common case (a file with no secret)
close to a memory scan: ``JQQJ99`` (Azure identifiable keys), ``kgk_`` (Keyguard), ``T3BlbkFJ``
(OpenAI), ``Q~`` (Entra), ``eyJ`` (JWT), ``earer`` (bearer); Storage, Cosmos DB, Service Bus
and SAS anchors are in ``keyguard.scan.servicekeys``. Legacy 32-hex keys and named base64
keys are found as character runs (``keyguard.scan.masks``), and only their context decides.
Checksums are verified where the format has one; look-alikes are dropped, not reported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

from keyguard.azure_keys import IDENTIFIABLE_KEY_PATTERN, validate_identifiable_key
from keyguard.keys.format import KEY_PATTERN, parse_key
from keyguard.scan.cloudkeys import CLOUD_DETECTORS
from keyguard.scan.findings import Hit
from keyguard.scan.hexcontext import (
    ENDPOINT_RE,
    azure_section_name,
    is_vault_version,
    judge_hex,
    prefix_for,
    sentence_around,
)
from keyguard.scan.masks import hex32_runs, to_bytes
from keyguard.scan.placeholders import entropy, is_placeholder
from keyguard.scan.servicekeys import SERVICE_DETECTORS, base64_keys

__all__ = ["DetectContext", "detect", "keep_disjoint", "PRIORITY"]

_OPENAI = re.compile(
    r"(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin|service)-)?[A-Za-z0-9_-]{16,200}?"
    r"T3BlbkFJ[A-Za-z0-9_-]{16,200}(?![A-Za-z0-9_-])"
)
# A full stop after the secret ends a sentence ("the secret is abc8Q~...xyz."), not the value:
# a dot followed by no secret character does not extend it
_ENTRA = re.compile(
    r"(?<![A-Za-z0-9_~.-])[A-Za-z0-9_~.-]{3}[78]Q~[A-Za-z0-9_~.-]{31,34}"
    r"(?![\w~-]|\.[\w~.-])"
)
_JWT = re.compile(
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"
    r"(?![A-Za-z0-9_-])"
)
_BEARER = re.compile(r"[Bb](?:earer|EARER)[ \t]+([A-Za-z0-9._~+/-]{20,}=*)")

_SERVICE_KIND = {"openai": "azure_openai_key", "ai_services": "azure_ai_services_key"}

# When two hits overlap, the more specific kind wins (lower number).
PRIORITY = {
    "azure_openai_key": 0,
    "azure_ai_services_key": 0,
    "azure_cognitive_services_key": 0,
    "keyguard_key": 1,
    "openai_key": 2,
    "entra_client_secret": 3,
    "azure_storage_key": 4,
    "azure_cosmos_key": 4,
    "azure_shared_access_key": 4,
    "azure_sas_signature": 4,
    "private_key": 3,
    "gcp_service_account_key": 3,
    "aws_access_key": 2,
    "aws_secret_key": 2,
    "google_api_key": 2,
    "github_token": 2,
    "gitlab_token": 2,
    "slack_token": 2,
    "slack_webhook": 2,
    "stripe_key": 2,
    "npm_token": 2,
    "pypi_token": 2,
    "huggingface_token": 2,
    "anthropic_key": 2,
    "sendgrid_key": 2,
    "google_oauth_secret": 2,
    "shopify_token": 2,
    "databricks_token": 2,
    "digitalocean_token": 2,
    "groq_key": 2,
    "xai_key": 2,
    "perplexity_key": 2,
    "replicate_token": 2,
    "telegram_bot_token": 2,
    "atlassian_token": 2,
    "basic_auth": 6,
    "jwt": 5,
    "connection_string_password": 8,
    "azure_legacy_key": 6,
    "bearer_token": 7,
}


_CONFIDENCE_RANK = {"high": 0, "medium": 1, "low": 2}


@dataclass(slots=True)
class DetectContext:
    """Per-file facts the context rules need, computed at most once."""

    file_text: str
    hex_enabled: bool = True
    _endpoint: bool | None = None

    @property
    def has_endpoint(self) -> bool:
        if self._endpoint is None:
            self._endpoint = ENDPOINT_RE.search(self.file_text) is not None
        return self._endpoint


def _anchored(text: str, anchor: str) -> Iterator[int]:
    pos = text.find(anchor)
    while pos != -1:
        yield pos
        pos = text.find(anchor, pos + 1)


def _azure(text: str) -> Iterator[Hit]:
    for pos in _anchored(text, "JQQJ99"):
        m = IDENTIFIABLE_KEY_PATTERN.match(text, pos - 52) if pos >= 52 else None
        if m is None:
            continue
        key = m.group()
        info = validate_identifiable_key(key)
        if info is None or is_placeholder(key[:52], key):
            continue
        kind = _SERVICE_KIND.get(info.service, "azure_cognitive_services_key")
        detail = (
            f"{info.service_name}, {info.year}-{info.month:02d}, checksum {info.checksum_encoding}"
        )
        yield Hit(kind, m.start(), m.end(), key, "high", detail)


def _keyguard(text: str) -> Iterator[Hit]:
    for pos in _anchored(text, "kgk_"):
        m = KEY_PATTERN.match(text, pos)
        if m is None:
            continue
        parsed = parse_key(m.group())
        if parsed is None or is_placeholder(m.group()[16:48], m.group()):
            continue
        yield Hit(
            "keyguard_key", m.start(), m.end(), parsed.full, "high", f"key id {parsed.key_id}"
        )


def _openai(text: str) -> Iterator[Hit]:
    seen = -1
    for pos in _anchored(text, "T3BlbkFJ"):
        if pos < seen:
            continue
        start = text.rfind("sk-", max(0, pos - 230), pos)
        m = _OPENAI.match(text, start) if start != -1 else None
        if m is None:
            continue
        seen = m.end()
        body = m.group().replace("T3BlbkFJ", "")
        if is_placeholder(body[-40:], m.group()):
            continue
        yield Hit("openai_key", m.start(), m.end(), m.group(), "high", "OpenAI API key")


def _entra(text: str) -> Iterator[Hit]:
    for tilde in _anchored(text, "~"):  # "~" is rare, so memchr beats a two-character search
        pos = tilde - 1
        if pos < 4 or text[pos] != "Q":
            continue
        m = _ENTRA.match(text, pos - 4)
        if m is None:
            continue
        tail = m.group()[6:]
        if is_placeholder(tail, m.group()) or entropy(tail) < 3.0:
            continue
        yield Hit("entra_client_secret", m.start(), m.end(), m.group(), "high", "client secret")


def _b64json(segment: str) -> object:
    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        return None


_HMAC_ALGS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
# Secrets used by documentation and tutorials to sign example tokens (jwt.io, library READMEs).
_SAMPLE_JWT_SECRETS = (
    b"secret", b"your-256-bit-secret", b"your-384-bit-secret", b"your-512-bit-secret", b"",
    b"key", b"test", b"password", b"changeme", b"mysecret", b"my-secret", b"secret-key",
    b"secretkey", b"your-secret-key", b"supersecret", b"shhhhh",
)  # fmt: skip


def _signed_with_sample_secret(token: str, alg: str) -> bool:
    """True for an example token: an HMAC JWT signed with a documentation secret."""
    digest = _HMAC_ALGS.get(alg.upper())
    if digest is None:
        return False
    signing_input, _, sig = token.rpartition(".")
    try:
        signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except (ValueError, binascii.Error):
        return False
    data = signing_input.encode("latin-1")
    return any(
        hmac.compare_digest(hmac.new(s, data, digest).digest(), signature)
        for s in _SAMPLE_JWT_SECRETS
    )


def _jwt(text: str) -> Iterator[Hit]:
    seen = -1
    for pos in _anchored(text, "eyJ"):
        if pos < seen:
            continue
        m = _JWT.match(text, pos)
        if m is None:
            continue
        seen = m.end()
        header = _b64json(m.group().split(".", 1)[0])
        if not isinstance(header, dict) or str(header.get("alg", "none")).lower() == "none":
            continue
        if is_placeholder(m.group().rsplit(".", 1)[1], m.group()):
            continue
        if _signed_with_sample_secret(m.group(), str(header.get("alg"))):
            continue
        yield Hit("jwt", m.start(), m.end(), m.group(), "medium", f"alg {header.get('alg')}")


def _bearer(text: str) -> Iterator[Hit]:
    for anchor in ("earer", "EARER"):
        for pos in _anchored(text, anchor):
            m = _BEARER.match(text, pos - 1) if pos >= 1 else None
            if m is None:
                continue
            token = m.group(1)
            if token.startswith("eyJ") or entropy(token) < 3.5 or is_placeholder(token):
                continue
            if not (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
                continue
            yield Hit("bearer_token", m.start(1), m.end(1), token, "medium", "Authorization header")


def _in_identifier(text: str, start: int) -> bool:
    """A 32-hex run joined by ``_`` to a name is part of that name
    (``secrets.AzureAppService_PublishProfile_<hex>``), not a value; one followed by a
    Mailchimp data centre (``<hex>-us21``) is a Mailchimp key, read by the named-secret rule.
    Any other suffix (``<hex>-x``) is not enough: appended to an Azure key, it would hide it."""
    before = text[max(0, start - 2) : start]
    after = text[start + 32 : start + 36]
    return (
        (len(before) == 2 and before[1] == "_" and before[0].isalnum())
        or (len(after) >= 2 and after[0] == "_" and after[1].isascii() and after[1].isalnum())
        or (len(after) == 4 and after.startswith("-us") and after[3].isdigit())
    )


def _hex(text: str, ctx: DetectContext, outer_prefix: str) -> Iterator[Hit]:
    for start in hex32_runs(to_bytes(text)):
        key = text[start : start + 32]
        if is_placeholder(key) or _in_identifier(text, start) or is_vault_version(text, start):
            continue
        prefix, near = prefix_for(text, start, outer_prefix)
        verdict = judge_hex(
            prefix,
            ctx.has_endpoint,
            near,
            partial(sentence_around, text, start, start + 32),
            partial(azure_section_name, text, start),
        )
        if verdict is not None:
            yield Hit(
                "azure_legacy_key", start, start + 32, key, verdict.confidence, verdict.reason
            )


_SIMPLE: tuple[Callable[[str], Iterator[Hit]], ...] = (
    _azure,
    _keyguard,
    _openai,
    _entra,
    *SERVICE_DETECTORS,
    *CLOUD_DETECTORS,
    _jwt,
    _bearer,
)


class _Span(Protocol):
    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


_S = TypeVar("_S", bound=_Span)


def keep_disjoint(ranked: Iterable[_S], limit: int | None = None) -> list[_S]:
    """The spans of ``ranked`` (the best first) that overlap none kept before them, ordered by
    start; at most ``limit``. Kept spans are disjoint and ordered, so a new one overlaps one of
    them only if it overlaps a neighbour (an empty span counts as one character)."""
    kept: list[_S] = []
    starts: list[int] = []
    for span in ranked:
        i = bisect_right(starts, span.start)
        if i and kept[i - 1].end > span.start:
            continue
        if i < len(kept) and kept[i].start < max(span.end, span.start + 1):
            continue
        kept.insert(i, span)
        starts.insert(i, span.start)
        if limit is not None and len(kept) >= limit:
            break
    return kept


def detect(text: str, ctx: DetectContext, outer_prefix: str = "") -> list[Hit]:
    """All hits in ``text``; overlapping hits resolved in favour of the more specific kind,
    then the higher confidence, then the first detector (identifiable keys come first)."""
    hits: list[Hit] = list(base64_keys(text, outer_prefix))
    for detector in _SIMPLE:
        hits.extend(detector(text))
    if ctx.hex_enabled:
        hits.extend(_hex(text, ctx, outer_prefix))
    if len(hits) < 2:
        return hits
    hits.sort(key=lambda h: (PRIORITY[h.kind], h.start, _CONFIDENCE_RANK[h.confidence]))
    return keep_disjoint(hits)
