"""Context rules for legacy 32-hex keys, which have no checksum and no structure.

A 32-hex string is reported only when its context says "key": the name it is assigned to, the
header or parameter it is sent in, or an Azure AI endpoint in the same file. The nearest name
decides; names of hashes, ids, etags, revisions and the like veto::

    AZURE_OPENAI_API_KEY=<hex>                 strong name              -> reported
    headers = {"api-key": "<hex>"}             strong name              -> reported
    key = "<hex>"  + *.openai.azure.com        weak name + endpoint     -> reported
    etag: "<hex>" / md5 = "<hex>"              negative name            -> not reported
    "<hex>"  (no name, no endpoint)                                      -> not reported

Lock files and checksum manifests are never searched for 32-hex keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ENDPOINT_RE", "HexVerdict", "classify_name", "judge_hex", "is_hex_exempt_file"]

ENDPOINT_RE = re.compile(
    r"(?i)openai\.azure\.com|cognitiveservices\.azure\.com|services\.ai\.azure\.com|"
    r"api\.cognitive\.microsoft\.com|microsofttranslator\.com|azure-api\.net"
)
_TOKEN_RE = re.compile(r"[A-Za-z_$@][\w$.@-]*")
_WORD_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")

_NEG_WORDS = frozenset(
    {
        "etag", "etags", "hash", "hashed", "hashes", "md5", "sha", "sha1", "sha256", "sha512",
        "shasum", "checksum", "checksums", "digest", "integrity", "commit", "revision", "rev",
        "nonce", "uuid", "guid", "fingerprint", "thumbprint", "version", "salt", "csrf", "xsrf",
        "cursor", "color", "colour", "hex", "id", "ids", "kid", "crc", "session", "trace",
        "correlation", "build", "cache", "idempotency", "partition", "row", "sort", "object",
        "foreign", "public", "request", "span", "tx", "txn", "block", "oid", "sum",
    }
)  # fmt: skip
_STRONG_RE = re.compile(
    r"apikey|subscriptionkey|keycredential|accountkey|resourcekey|servicekey|"
    r"(?:openai|cognitive(?:services?)?|speech|translator|vision|language|azureai|aiservices?|"
    r"foundry|luis|face|textanalytics)(?:api)?(?:key|secret)|^key[12]$|^azure\w*(?:key|secret)$"
)
_WEAK_RE = re.compile(r"key|secret|token|passw|pwd|credential|auth")
_AZURE_WORD_RE = re.compile(r"azure|openai|cognitive|speech|translator|aoai")

# Neutral words that may stand between a name and its value (types, keywords, accessors).
_SKIPPABLE = frozenset(
    {
        "string", "str", "const", "let", "var", "val", "final", "readonly", "static", "private",
        "public", "internal", "protected", "param", "export", "env", "arg", "set", "setx",
        "default", "defaultvalue", "value", "values", "getenv", "get", "getordefault", "environ",
        "getenvironmentvariable", "setenvironmentvariable", "new", "define", "add", "put",
        "setdefault", "or", "unwrap_or", "setitem", "header", "headers", "h", "data", "basic",
        "sensitive", "secure", "type", "text", "bearer", "token", "char", "sealed", "auto", "as",
        "dim",
    }
)  # fmt: skip

_EXEMPT_NAMES = frozenset(
    {
        "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock",
        "pipfile.lock", "uv.lock", "cargo.lock", "gemfile.lock", "composer.lock", "go.sum",
        "packages.lock.json", "pubspec.lock", "mix.lock", "flake.lock", "podfile.lock",
    }
)  # fmt: skip
_EXEMPT_SUFFIXES = (".lock", ".sum", ".md5", ".sha1", ".sha256", ".sha512", ".sri")


def is_hex_exempt_file(path: str) -> bool:
    """Lock files and checksum manifests: full of digests, never of keys."""
    name = path.rsplit("/", 1)[-1].lower()
    return name in _EXEMPT_NAMES or name.endswith(_EXEMPT_SUFFIXES) or name.startswith("sha")


def classify_name(name: str) -> str:
    """``"negative"``, ``"strong"``, ``"weak"`` or ``"neutral"`` for one identifier."""
    words = [w.lower() for w in _WORD_RE.findall(name)]
    if not words:
        return "neutral"
    norm = "".join(words)
    if norm in _NEG_WORDS or any(w in _NEG_WORDS for w in words):
        return "negative"
    if _STRONG_RE.search(norm):
        return "strong"
    if _WEAK_RE.search(norm):
        return "weak"
    return "neutral"


@dataclass(frozen=True, slots=True)
class HexVerdict:
    confidence: str
    reason: str


def judge_hex(prefix: str, file_has_endpoint: bool, near: str) -> HexVerdict | None:
    """Decide on a 32-hex candidate from the text before it (same line, or the line above).

    ``near`` is the text around the candidate (an endpoint there counts as very near).
    """
    tokens = _TOKEN_RE.findall(prefix[-120:])
    azure_named = False
    for token in reversed(tokens[-4:]):
        verdict = classify_name(token)
        if verdict == "negative":
            return None
        if verdict == "neutral":
            if token.rsplit(".", 1)[-1].lower().lstrip("$") in _SKIPPABLE:
                continue
            break
        azure_named = bool(_AZURE_WORD_RE.search(token.lower()))
        if verdict == "strong":
            if file_has_endpoint or azure_named:
                return HexVerdict("high", f"key name {token!r}")
            return HexVerdict("medium", f"key name {token!r}")
        if file_has_endpoint or azure_named:
            return HexVerdict("medium", f"name {token!r} and an Azure AI endpoint")
        return None
    if ENDPOINT_RE.search(near):
        return HexVerdict("medium", "Azure AI endpoint next to it")
    return None
