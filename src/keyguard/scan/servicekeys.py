"""Azure data-plane keys next to the AI keys: Storage, Cosmos DB, Service Bus / Event Hubs /
Relay shared access keys, and SAS signatures.

* **identifiable** keys (``+ASt``, ``ACDb``, ``+ASb``, ``+AEh``, ``+ARm``): found anywhere by
  their signature, checksum verified (``keyguard.scan.identifiable``);
* **connection strings**: ``AccountKey=`` (Storage, or Cosmos DB after ``AccountEndpoint=``)
  and ``SharedAccessKey=`` (Service Bus, Event Hubs, Relay, IoT Hub);
* **named** keys: an 88-character (64-byte) or 44-character (32-byte) base64 value whose
  nearest name says which service it belongs to (``AZURE_STORAGE_KEY``, ``cosmosKey``,
  ``azurestorageaccountkey``, ``sharedAccessKey``, ``--account-key``), or whose generic key
  name (``key``, ``primaryKey``, ``password``) stands near an endpoint of that service
  (``*.blob.core.windows.net``, ``*.documents.azure.com``, ``*.servicebus.windows.net``); a
  password in a ``mongodb://user:<key>@*.cosmos.azure.com`` URL; the ``value`` beside
  ``"keyName": "key1"`` in ``az storage account keys list`` output;
* **SAS signatures**: the ``sig`` of a shared access signature, percent-encoded or not, in a
  URL (``?sv=...&sig=...``), as a YAML/JSON field beside ``sv``/``se``/``skn``, or split
  after ``sig=`` across a string concatenation or a folded YAML line. The secret reported
  (and fingerprinted) is the decoded signature, so every encoding of it matches.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import unquote

from keyguard.scan.findings import Hit
from keyguard.scan.hexcontext import (
    classify_name,
    nearest_names,
    prefix_for,
    section_name,
    sentence_around,
)
from keyguard.scan.identifiable import IDENTIFIABLE, validate_base64_key
from keyguard.scan.lines import line_end, line_start
from keyguard.scan.masks import text_base64_runs
from keyguard.scan.placeholders import entropy, is_placeholder

__all__ = ["SERVICE_DETECTORS", "base64_keys", "connection_strings", "sas"]

_STORAGE, _COSMOS, _SHARED = "azure_storage_key", "azure_cosmos_key", "azure_shared_access_key"
_ACCOUNT_KEY = re.compile(r"AccountKey=([A-Za-z0-9+/]{86}==)(?![A-Za-z0-9+/=])")
_SHARED_KEY = re.compile(r"SharedAccessKey=([A-Za-z0-9+/]{43}=)(?![A-Za-z0-9+/=])")
_COSMOS_CS = re.compile(r"(?i)AccountEndpoint=|documents\.azure\.com|cosmos\.azure\.com")

# Names that say which service a base64 key belongs to (checked on the normalised name).
_NAME_SERVICE = (
    (re.compile(r"cosmos|documentdb|docdb|masterkey"), _COSMOS),
    (re.compile(r"storage|blobkey|sharedkey|azurefile|datalake|adls"), _STORAGE),
    (re.compile(r"sharedaccess|servicebus|eventhub|relay|saskey|sbkey|ehkey|iothub"), _SHARED),
)
_NEG_B64 = frozenset(
    {
        "signature", "sig", "iv", "salt", "nonce", "cert", "certificate", "thumbprint", "pub",
        "pubkey", "publickey", "hmac", "mac", "cipher", "ciphertext", "encrypted", "wrapped",
        "blurhash", "image", "icon", "font", "data", "content", "payload", "seed", "sha",
    }
)  # fmt: skip
# Endpoints and client names that tie a generic "key" to a service (nearest one wins).
_HINTS = re.compile(
    r"(?i)(?P<cosmos>documents\.azure\.com|cosmos\.azure\.com|AccountEndpoint=|cosmos)|"
    r"(?P<storage>\.(?:blob|queue|table|file|dfs)\.core\.windows\.net|AccountName=|"
    r"DefaultEndpointsProtocol|BlobServiceClient|StorageSharedKeyCredential|storage.?account|"
    r"\baz storage\b)|"
    r"(?P<shared>servicebus\.windows\.net|sb://|ServiceBusClient|EventHubProducerClient|"
    r"EventHubConsumerClient|SharedAccessKeyName|azure-devices\.net)"
)
_HINT_KIND = {"cosmos": _COSMOS, "storage": _STORAGE, "shared": _SHARED}
# A key passed to a client or credential constructor on the same line, by position.
_CALL = re.compile(
    r"(?P<cosmos>CosmosClient|DocumentClient)|"
    r"(?P<storage>(?:Storage)?SharedKeyCredential|(?:Blob|Queue|Table|Share|DataLake)"
    r"(?:Service)?Client)|"
    r"(?P<shared>ServiceBus\w*Client|EventHub\w*Client|AzureSasCredential)|"
    r"(?P<named>AzureNamedKeyCredential)"
)
_LENGTH_KINDS = {88: (_STORAGE, _COSMOS), 44: (_SHARED,)}
# ``az storage account keys list``: [{"keyName": "key1", "permissions": "FULL", "value": "..."}]
_AZ_KEY_LIST = re.compile(r'"keyName"\s*:\s*"key[12]"[^{}]{0,120}"value"\s*:\s*"\Z')
_URL_PASSWORD = re.compile(r"://[^\s:/@]{1,64}:$")

_SAS_ANCHOR = re.compile(r"""sig["']?[ \t]*[=:]""")  # a literal prefix: found at C speed
_SAS_SEP = re.compile(r"""["']?[ \t]*[=:][ \t]*["'`]?""")
_SAS_GLUE = re.compile(
    r"""(?:["'`][ \t]*(?:\+|\.\.?|&|\|\|)?[ \t]*(?:\\?\r?\n[ \t]*)?(?:\+[ \t]*)?["'`]"""
    r"""|[ \t]*\\?\r?\n[ \t]*|["'`])"""
)
_SAS_VALUE = re.compile(r"(?:[A-Za-z0-9+/]|%2[BbFf]){43}(?:=|%3[Dd])?(?![A-Za-z0-9+/%=])")
_EXAMPLE = re.compile(
    r"(?i)(?:\b(?:for example|example|for instance|looks (?:something )?like)|\be\.g\.)[:,]?\s"
)
_SAS_EXPIRY = re.compile(
    r"""(?:^|[?&;\s"'{,])se["']?[ \t]*[=:][ \t]*["']?(?:(\d{4}-\d\d-\d\d)|(\d{9,11})(?!\d))"""
)
_SAS_SIBLING = re.compile(
    r"""(?i)(?:^|[?&;\s"'{,(])(?:sv|se|sr|sp|st|spr|srt|ss|skn|signedexpiry|"""
    r"""signedpermissions?)["']?[ \t]*[=:]|SharedAccessSignature"""
)


def _kind_of_name(name: str) -> str | None:
    norm = name.lower().replace("-", "").replace("_", "").replace(".", "")
    for pattern, kind in _NAME_SERVICE:
        if pattern.search(norm):
            return kind
    return None


def _identifiable(value: str) -> Hit | None:
    """The hit for a standalone 44/88-character base64 value with a known signature."""
    for kind in IDENTIFIABLE.values():
        if (
            len(value) == kind.length
            and value[kind.offset : kind.offset + 4] == kind.signature
            and kind.pattern.fullmatch(value)
        ):
            valid = validate_base64_key(value, kind)
            detail = f"{kind.service} identifiable key, " + (
                "checksum verified" if valid else "checksum does not verify"
            )
            return Hit(kind.kind, 0, len(value), value, "high" if valid else "medium", detail)
    return None


def connection_strings(text: str) -> Iterator[Hit]:
    if "Key=" not in text:
        return
    pos = text.find("AccountKey=")
    while pos != -1:
        m = _ACCOUNT_KEY.match(text, pos)
        if m is not None and not is_placeholder(m.group(1)[:60], m.group(1)):
            ls, _ = line_start(text, pos, 400)
            before = text[ls:pos]
            if _COSMOS_CS.search(before):
                kind, detail = _COSMOS, "Cosmos DB connection string"
            else:
                named = "AccountName=" in before
                kind, detail = _STORAGE, "connection string" if named else "account key"
            yield Hit(kind, m.start(1), m.end(1), m.group(1), "high", detail)
        pos = text.find("AccountKey=", pos + 1)
    pos = text.find("SharedAccessKey=")
    while pos != -1:
        m = _SHARED_KEY.match(text, pos)
        if m is not None and not is_placeholder(m.group(1)[:40], m.group(1)):
            line = text[line_start(text, pos)[0] : pos]
            where = "IoT Hub" if "azure-devices.net" in line else "Service Bus / Event Hubs / Relay"
            yield Hit(
                _SHARED, m.start(1), m.end(1), m.group(1), "high", f"{where} connection string"
            )
        pos = text.find("SharedAccessKey=", pos + 1)


def _hinted_kind(text: str, start: int, end: int, kinds: tuple[str, ...]) -> str | None:
    """The service of the nearest endpoint or client name around a value (2,000 characters
    before, 500 after), among ``kinds``."""
    best: tuple[int, str] | None = None
    lo = max(0, start - 2000)
    for m in _HINTS.finditer(text, lo, min(len(text), end + 500)):
        if m.lastgroup is None or _HINT_KIND[m.lastgroup] not in kinds:
            continue
        distance = start - m.end() if m.end() <= start else m.start() - end + 1000
        if best is None or distance < best[0]:
            best = (distance, _HINT_KIND[m.lastgroup])
    return best[1] if best else None


def _judge_b64(
    text: str, start: int, end: int, outer_prefix: str, prose: list[bool | None]
) -> tuple[str, str, str] | None:
    """(kind, confidence, reason) for a standalone 88/44-character base64 value, or None;
    ``prose[0]`` caches whether ``text`` names a service at all (``None``: not looked yet)."""
    if text.endswith(("AccountKey=", "SharedAccessKey="), 0, start):
        return None  # a connection string: ``connection_strings`` reports it, with its service
    kinds = _LENGTH_KINDS[end - start]
    if _URL_PASSWORD.search(text, max(0, start - 80), start) and text.startswith("@", end):
        host = text[end : end + 120].split("/", 1)[0]
        kind = _hinted_kind(host, 0, 0, kinds)
        return (kind, "high", "password of a URL to its endpoint") if kind else None
    if end - start == 88 and _AZ_KEY_LIST.search(text, max(0, start - 240), start):
        return _STORAGE, "high", "value of a storage account key listed by the Azure CLI"
    prefix, _ = prefix_for(text, start, outer_prefix)
    weak = None  # a generic name (``key``) with no endpoint near: the name before it may say
    for token in nearest_names(prefix):
        words = {w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", token)}
        verdict = classify_name(token)
        if verdict == "negative" or words & _NEG_B64:
            return None
        named = _kind_of_name(token)
        if named in kinds:
            reason = f"key name {token!r}" if weak is None else f"key name {token} {weak}"
            return named, "high" if weak is None else "medium", reason
        if named is not None or weak is not None:
            return None
        if verdict == "neutral":
            break
        hinted = _hinted_kind(text, start, end, kinds)
        if hinted:
            return hinted, "medium", f"name {token!r} and an endpoint nearby"
        weak = token  # `Storage key = <key>`: the service named just before
    if weak is not None:
        return None
    section = section_name(text, start)  # `"storage_primary_key": {..., "value": <key>}`
    in_section = _kind_of_name(section) if section else None
    if in_section is not None and in_section in kinds:
        return in_section, "medium", f"in the section {section!r}"
    found = _passed_to_client(prefix, kinds)
    if found is not None:
        return found
    if prose[0] is None:  # once per text: most never name a service, and skip the sentences
        lowered = text.lower()
        prose[0] = any(word in lowered for word in _PROSE_WORDS)
    return _named_in_prose(text, start, end, kinds) if prose[0] else None


# Prose that names the key a value is: "my storage account key is <key>", "the Service Bus
# shared access key: <key>" (read in the value's sentence, bounded by ``sentence_around``)
_PROSE_KEY = re.compile(
    r"(?i)\b(?:(?P<cosmos>cosmos(?:[ _-]?db)?)|(?P<storage>storage)(?:[ _-]?account)?|"
    r"(?P<shared>service[ _-]?bus|event[ _-]?hubs?|shared[ _-]?access))"
    r"(?:[ _-]?(?:primary|secondary|access|master|account))?[ _-]?key\b(?![ _-]?vault)"
)  # "the Cosmos DB key vault" names a Key Vault, not a key


_PROSE_WORDS = ("storage", "cosmos", "service", "event", "shared")  # _PROSE_KEY: each one


def _named_in_prose(
    text: str, start: int, end: int, kinds: tuple[str, ...]
) -> tuple[str, str, str] | None:
    sentence = sentence_around(text, start, end)
    if _EXAMPLE.search(sentence):
        return None
    for m in _PROSE_KEY.finditer(sentence):
        kind = _HINT_KIND[m.lastgroup or ""]
        if kind in kinds:
            return kind, "medium", f"the text names a {m.group().lower()}"
    return None


def _passed_to_client(prefix: str, kinds: tuple[str, ...]) -> tuple[str, str, str] | None:
    line = prefix[prefix.rfind("\n") + 1 :][-160:]
    for m in _CALL.finditer(line):
        group = m.lastgroup or ""
        # AzureNamedKeyCredential serves Tables (88-character keys) and messaging (44).
        kind = kinds[0] if group == "named" else _HINT_KIND.get(group)
        if kind in kinds and "(" in line[m.end() :]:
            return kind, "high", f"passed to {m.group()}"
    return None


def base64_keys(text: str, outer_prefix: str = "") -> Iterator[Hit]:
    """Identifiable keys and named keys: standalone 44/88-character base64 values (the runs
    the base64 decoder needs anyway, so the text is not searched again)."""
    if "=" not in text:
        return
    prose: list[bool | None] = [None]
    for start, end in text_base64_runs(text):
        length = end - start
        if length not in (44, 88):
            continue
        value = text[start:end]
        if (
            not (
                (length == 88 and value.endswith("==") and "=" not in value[:86])
                or (length == 44 and value.endswith("=") and "=" not in value[:43])
            )
            or "-" in value
            or "_" in value
            or is_placeholder(value[:60], value)
        ):
            continue
        hit = _identifiable(value)
        if hit is not None:
            yield Hit(hit.kind, start, end, value, hit.confidence, hit.detail)
            continue
        if entropy(value) < 4.0:
            continue
        verdict = _judge_b64(text, start, end, outer_prefix, prose)
        if verdict is not None:
            kind, confidence, reason = verdict
            yield Hit(kind, start, end, value, confidence, reason)


def _expiry(window: str) -> str:
    """``, expiry <date>`` from the token's ``se`` (an ISO date, or Unix seconds)."""
    m = _SAS_EXPIRY.search(unquote(window))
    if m is None:
        return ""
    if m.group(1):
        return f", expiry {m.group(1)}"
    try:
        return f", expiry {datetime.fromtimestamp(int(m.group(2)), UTC):%Y-%m-%d}"
    except (OverflowError, ValueError, OSError):
        return ""


def _sas_signature(raw: str) -> str | None:
    value = unquote(raw)
    if len(value) == 43:
        value += "="
    try:
        if len(base64.b64decode(value, validate=True)) != 32:
            return None
    except (binascii.Error, ValueError):
        return None
    return None if is_placeholder(value[:43], value) or entropy(value) < 4.0 else value


def sas(text: str) -> Iterator[Hit]:
    if "sig" not in text:
        return
    for anchor in _SAS_ANCHOR.finditer(text):
        at = anchor.start()
        sep = _SAS_SEP.match(text, at + 3)
        if sep is None or (at and (text[at - 1].isalnum() or text[at - 1] in "_-")):
            continue
        how = "URL" if sep.group().strip(" \t\"'") == "=" else "field"
        m = _SAS_VALUE.match(text, sep.end())
        if m is None:
            bare = sep.end() - (1 if sep.group()[-1:] in "\"'`" else 0)
            glue = _SAS_GLUE.match(text, bare)
            m = _SAS_VALUE.match(text, glue.end()) if glue else None
            how = "split"
        if m is None:
            continue
        if how == "field":  # sv:, se:, ... fields around it (YAML, JSON)
            window = text[max(0, at - 400) : m.end() + 400]
        else:  # the same URL or token: its own line (and the value's, when split)
            window = text[line_start(text, at)[0] : line_end(text, m.end())]
        if not _SAS_SIBLING.search(window) or _EXAMPLE.search(text, max(0, at - 300), at):
            continue
        signature = _sas_signature(m.group())
        if signature is not None:
            detail = f"shared access signature ({how}{_expiry(window)})"
            yield Hit("azure_sas_signature", m.start(), m.end(), signature, "high", detail)


SERVICE_DETECTORS = (connection_strings, sas)
