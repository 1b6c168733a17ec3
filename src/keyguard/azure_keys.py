"""Azure AI services key formats: the 84-character identifiable key and the legacy 32-hex key.

Azure AI services (Azure OpenAI, AI Services, the other Cognitive Services) issue keys in the
"common annotated security key" layout (CASK, legacy form). Every character is ``[A-Za-z0-9]``
and the whole key is standard base64 text that decodes to 63 bytes::

    chars  0-51  52 random base62 characters (39 bytes of key material)
    chars 52-55  JQQJ          fixed CASK signature
    char  56     9             "org" bits
    char  57     9             key kind (9 = standard key)
    char  58     year          base64 alphabet index + 2024 (A = 2024, B = 2025, ...)
    char  59     month         A-L (January-December)
    chars 60-71  platform reserved (9 bytes)
    chars 72-75  AAA + service base64 alphabet[service enum] (AAAB = Azure OpenAI)
    chars 76-79  ACOG          provider signature (Azure Cognitive Services)
    chars 80-83  checksum

The checksum is Marvin32 (SymCrypt) over the 60 bytes that ``key[0:80]`` decodes to, seeded
with the ASCII bytes of ``Default0`` read big-endian, folded to 32 bits. Microsoft's validator
accepts two encodings of it, and so do we:

* ``base64``: the standard base64 of the first 3 little-endian checksum bytes;
* ``base62``: the base62 text of the 4 little-endian checksum bytes (read as one big-endian
  number, one ``0`` per leading zero byte), right-padded with ``0`` to 6 characters; the key
  carries its first 4 characters.

The older 32-hex keys carry no structure at all: only the context they appear in tells them
apart from hashes (see ``keyguard.scan.hexcontext``).

All functions here are pure apart from the random source of the generators.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "AzureKeyInfo",
    "CHECKSUM_ENCODINGS",
    "CHECKSUM_SEED",
    "IDENTIFIABLE_KEY_LENGTH",
    "IDENTIFIABLE_KEY_PATTERN",
    "IDENTIFIABLE_KEY_REGEX",
    "LEGACY_KEY_PATTERN",
    "SERVICES",
    "ServiceInfo",
    "checksum32",
    "encode_checksum",
    "generate_identifiable_key",
    "generate_legacy_key",
    "marvin32",
    "validate_identifiable_key",
]

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF

BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B64_INDEX = {c: i for i, c in enumerate(BASE64_ALPHABET)}

IDENTIFIABLE_KEY_LENGTH = 84
CASK_SIGNATURE = "JQQJ"
PROVIDER_SIGNATURE = "ACOG"
CHECKSUM_ENCODINGS = ("base64", "base62")

# ComputeHisV1ChecksumSeed("Default0"): the ASCII bytes reversed, read little-endian.
CHECKSUM_SEED = int.from_bytes(b"Default0", "big")

# A candidate 84-character key anywhere in text; the checksum is still to be verified.
IDENTIFIABLE_KEY_REGEX = (
    r"(?<![A-Za-z0-9])[A-Za-z0-9]{52}JQQJ99[A-Za-z0-9][A-L][A-Za-z0-9]{16}ACOG[A-Za-z0-9]{4}"
    r"(?![A-Za-z0-9])"
)
IDENTIFIABLE_KEY_PATTERN = re.compile(IDENTIFIABLE_KEY_REGEX)
# A candidate legacy key: exactly 32 lowercase hex digits (context decides, see keyguard.scan).
LEGACY_KEY_PATTERN = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{32}(?![0-9A-Za-z])")


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """One value of Azure's service enum: the ``code`` is the key's character 75."""

    name: str
    code: str
    display: str


_SERVICE_NAMES = (
    ("ai_services", "Azure AI Services"),
    ("openai", "Azure OpenAI"),
    ("anomaly_detector_ee", "Azure Anomaly Detector EE"),
    ("anomaly_detector", "Azure Anomaly Detector"),
    ("cognitive_services", "Azure Cognitive Services"),
    ("computer_vision", "Azure Computer Vision"),
    ("content_moderator", "Azure Content Moderator"),
    ("content_safety", "Azure Content Safety"),
    ("custom_vision_prediction", "Azure Custom Vision Prediction"),
    ("custom_vision_training", "Azure Custom Vision Training"),
    ("face", "Azure Face"),
    ("form_recognizer", "Azure Form Recognizer"),
    ("health_decision_support", "Azure Health Decision Support"),
    ("health_insights", "Azure Health Insights"),
    ("immersive_reader", "Azure Immersive Reader"),
    ("internal_all_in_one", "Azure Internal All-in-One"),
    ("knowledge", "Azure Knowledge"),
    ("luis_authoring", "Azure LUIS Authoring"),
    ("luis", "Azure LUIS"),
    ("metrics_advisor", "Azure Metrics Advisor"),
    ("personalizer", "Azure Personalizer"),
    ("qna_maker", "Azure QnA Maker"),
    ("qna_maker_v2", "Azure QnA Maker v2"),
    ("speaker_recognition", "Azure Speaker Recognition"),
    ("speech_services", "Azure Speech Services"),
    ("speech_translation", "Azure Speech Translation"),
    ("text_analytics", "Azure Text Analytics"),
    ("text_translation", "Azure Text Translation"),
    ("dummy", "Azure Dummy"),
    ("transcription_intelligence", "Azure Transcription Intelligence"),
    ("video_intelligence", "Azure Video Intelligence"),
    ("bing_autosuggest", "Bing Autosuggest"),
    ("bing_autosuggest_v7", "Bing Autosuggest v7"),
    ("bing_custom_search", "Bing Custom Search"),
    ("bing_custom_visual_search", "Bing Custom Visual Search"),
    ("bing_entity_search", "Bing Entity Search"),
    ("bing_search", "Bing Search"),
    ("bing_search_v7", "Bing Search v7"),
    ("bing_speech", "Bing Speech"),
    ("bing_spell_check", "Bing Spell Check"),
    ("bing_spell_check_v7", "Bing Spell Check v7"),
)

# Service name -> info, in enum order (index i has code BASE64_ALPHABET[i]).
SERVICES: dict[str, ServiceInfo] = {
    name: ServiceInfo(name=name, code=BASE64_ALPHABET[i], display=display)
    for i, (name, display) in enumerate(_SERVICE_NAMES)
}
_BY_CODE = {info.code: info for info in SERVICES.values()}


@dataclass(frozen=True, slots=True)
class AzureKeyInfo:
    """What a checksum-valid identifiable key says about itself (nothing secret)."""

    service: str  # a SERVICES name, or "unknown" for a code outside the enum
    service_code: str  # the key's character 75
    service_name: str
    year: int
    month: int
    checksum_encoding: str  # "base64" or "base62"


# --- Marvin32 ---------------------------------------------------------------------------


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK32


def _block(p0: int, p1: int) -> tuple[int, int]:
    p1 ^= p0
    p0 = _rotl(p0, 20)
    p0 = (p0 + p1) & _MASK32
    p1 = _rotl(p1, 9)
    p1 ^= p0
    p0 = _rotl(p0, 27)
    p0 = (p0 + p1) & _MASK32
    p1 = _rotl(p1, 19)
    return p0, p1


def marvin32(seed: int, data: bytes) -> int:
    """SymCrypt Marvin32 of ``data`` with a 64-bit ``seed``; the 64-bit result, unsigned.

    The high 32 bits are the final ``p1`` state, the low 32 bits ``p0`` (as SymCrypt and
    Microsoft's .NET/Rust ports return it; .NET shows it as a signed ``long``).
    """
    p0 = seed & _MASK32
    p1 = (seed >> 32) & _MASK32
    full = len(data) - len(data) % 4
    for i in range(0, full, 4):
        p0 = (p0 + int.from_bytes(data[i : i + 4], "little")) & _MASK32
        p0, p1 = _block(p0, p1)
    tail = data[full:]
    # Pad with a single 0x80 byte after the tail, as one little-endian word.
    p0 = (p0 + (int.from_bytes(tail, "little") | (0x80 << (8 * len(tail))))) & _MASK32
    p0, p1 = _block(p0, p1)
    p0, p1 = _block(p0, p1)
    return ((p1 << 32) | p0) & _MASK64


def checksum32(data: bytes, seed: int = CHECKSUM_SEED) -> bytes:
    """Marvin32 folded to 32 bits (``hi ^ lo``), as the 4 little-endian bytes .NET writes."""
    h = marvin32(seed, data)
    return (((h >> 32) ^ h) & _MASK32).to_bytes(4, "little")


def _base62_bytes(data: bytes) -> str:
    """Base62 of ``data`` read as a big-endian number, one ``0`` per leading zero byte."""
    zeros = min(len(data) - len(data.lstrip(b"\0")), len(data) - 1)
    value = int.from_bytes(data, "big")
    digits = []
    while True:
        value, rem = divmod(value, 62)
        digits.append(BASE62_ALPHABET[rem])
        if not value:
            break
    return "0" * zeros + "".join(reversed(digits))


def encode_checksum(checksum: bytes, encoding: str) -> str:
    """The 4 characters an 84-character key carries for ``checksum`` in ``encoding``."""
    if encoding == "base64":
        return base64.b64encode(checksum[:3]).decode("ascii")
    if encoding == "base62":
        return _base62_bytes(checksum).ljust(6, "0")[:4]
    raise ValueError(f"unknown checksum encoding {encoding!r}; use one of {CHECKSUM_ENCODINGS}")


# --- validation -------------------------------------------------------------------------


def _is_alnum(text: str) -> bool:
    return text.isascii() and text.isalnum()


def validate_identifiable_key(key: str) -> AzureKeyInfo | None:
    """Return what a valid 84-character Azure AI services key says, or ``None``.

    Checks the length, alphabet, fixed signatures, date fields and the checksum in both
    encodings Microsoft's validator accepts. Does no lookup.
    """
    if len(key) != IDENTIFIABLE_KEY_LENGTH or not _is_alnum(key):
        return None
    if key[52:56] != CASK_SIGNATURE or key[56:58] != "99" or key[76:80] != PROVIDER_SIGNATURE:
        return None
    month = _B64_INDEX[key[59]] + 1
    if month > 12:
        return None
    try:
        body = base64.b64decode(key[:80], validate=True)
    except binascii.Error:  # pragma: no cover - 80 alphanumeric chars always decode
        return None
    checksum = checksum32(body)
    given = key[80:]
    encoding = next((e for e in CHECKSUM_ENCODINGS if encode_checksum(checksum, e) == given), None)
    if encoding is None:
        return None
    code = key[75]
    service = _BY_CODE.get(code) if key[72:75] == "AAA" else None
    return AzureKeyInfo(
        service=service.name if service else "unknown",
        service_code=code,
        service_name=service.display if service else "Azure Cognitive Services (unknown kind)",
        year=2024 + _B64_INDEX[key[58]],
        month=month,
        checksum_encoding=encoding,
    )


# --- generation -------------------------------------------------------------------------


def _random_base62(length: int, choice: Callable[[str], str]) -> str:
    return "".join(choice(BASE62_ALPHABET) for _ in range(length))


def build_identifiable_key(
    random_part: str,
    service: str,
    year: int,
    month: int,
    platform_reserved: str,
    checksum_encoding: str,
) -> str | None:
    """Assemble a key from its fields; ``None`` when the checksum encodes to ``+`` or ``/``.

    ``random_part`` is 52 base62 characters and ``platform_reserved`` 12. Deterministic, so
    tests can build keys from fixed inputs.
    """
    if len(random_part) != 52 or not _is_alnum(random_part):
        raise ValueError("random_part must be 52 base62 characters")
    if len(platform_reserved) != 12 or not _is_alnum(platform_reserved):
        raise ValueError("platform_reserved must be 12 base62 characters")
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; use one of {sorted(SERVICES)}")
    if not 2024 <= year <= 2024 + 61 or not 1 <= month <= 12:
        raise ValueError("year must be 2024-2085 and month 1-12")
    body = (
        random_part
        + CASK_SIGNATURE
        + "99"
        + BASE64_ALPHABET[year - 2024]
        + BASE64_ALPHABET[month - 1]
        + platform_reserved
        + "AAA"
        + SERVICES[service].code
        + PROVIDER_SIGNATURE
    )
    check = encode_checksum(checksum32(base64.b64decode(body)), checksum_encoding)
    if not _is_alnum(check):
        return None
    return body + check


def generate_identifiable_key(
    service: str = "openai",
    now: datetime | None = None,
    checksum_encoding: str = "base64",
) -> str:
    """A fresh, checksum-valid 84-character key for ``service`` (a ``SERVICES`` name).

    ``now`` sets the year/month fields (default: the current UTC time). The platform-reserved
    field has the shape seen in deployed keys (``AC`` + 5 random + ``XJ3w3``). With the
    ``base64`` checksum encoding the key is re-rolled until every character is alphanumeric.
    """
    if checksum_encoding not in CHECKSUM_ENCODINGS:
        raise ValueError(f"unknown checksum encoding {checksum_encoding!r}")
    when = now if now is not None else datetime.now(UTC)
    while True:
        platform = "AC" + _random_base62(5, secrets.choice) + "XJ3w3"
        key = build_identifiable_key(
            _random_base62(52, secrets.choice),
            service,
            when.year,
            when.month,
            platform,
            checksum_encoding,
        )
        if key is not None:
            return key


def generate_legacy_key() -> str:
    """A fresh legacy Azure AI services key: 32 lowercase hex digits."""
    return secrets.token_hex(16)
