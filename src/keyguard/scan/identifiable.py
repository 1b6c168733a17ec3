"""Azure's identifiable base64 keys: a fixed signature and a Marvin32 checksum in the key.

Storage, Cosmos DB, Service Bus, Event Hubs and Relay issue keys that are the standard base64
of random bytes followed by a 4-byte checksum, with a 4-character signature placed just before
the encoded checksum (Microsoft's ``IdentifiableSecrets.ValidateBase64Key``)::

    88 characters (64 bytes)   76 chars · signature · 5 chars · [AQgw] · ==
                               +ASt Storage account key, ACDb Cosmos DB key
    44 characters (32 bytes)   33 chars · signature · [A-P] · 5 chars · =
                               +ASb Service Bus, +AEh Event Hubs, +ARm Relay

The checksum is Marvin32 (``keyguard.azure_keys.checksum32``) of every byte but the last
four, seeded with a per-kind 8-character ASCII name read big-endian (``Default0`` for
Storage; ``Send0000``/``Listen00``/``Manage00`` for the messaging services' rule rights; the
Cosmos DB key kinds), compared with the last four bytes read little-endian. A key whose shape
matches but whose checksum does not is still a key-shaped value nobody types by accident: the
scanner reports it at medium confidence.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass

from keyguard.azure_keys import BASE64_ALPHABET, checksum32

__all__ = ["IDENTIFIABLE", "IdentifiableKind", "generate_base64_key", "validate_base64_key"]


def _seed(name: str) -> int:
    return int.from_bytes(name.encode("ascii"), "big")


_MESSAGING = tuple(_seed(n) for n in ("Send0000", "Listen00", "Manage00", "System00", "Unknown0"))
_COSMOS = tuple(
    _seed(n)
    for n in ("MastRW00", "MastRO00", "SystRW00", "SystRO00", "SysAll00", "Resour00", "Encryp00")
)


@dataclass(frozen=True, slots=True)
class IdentifiableKind:
    signature: str
    length: int  # 44 or 88 characters
    kind: str  # finding kind
    service: str
    seeds: tuple[int, ...]

    @property
    def pattern(self) -> re.Pattern[str]:
        sig = re.escape(self.signature)
        if self.length == 88:
            body = rf"[A-Za-z0-9+/]{{76}}{sig}[A-Za-z0-9+/]{{5}}[AQgw]=="
        else:
            body = rf"[A-Za-z0-9+/]{{33}}{sig}[A-P][A-Za-z0-9+/]{{5}}="
        return re.compile(rf"(?<![A-Za-z0-9+/]){body}(?![A-Za-z0-9+/=])")

    @property
    def offset(self) -> int:
        """Where the signature starts in the key."""
        return 76 if self.length == 88 else 33


IDENTIFIABLE: dict[str, IdentifiableKind] = {
    k.signature: k
    for k in (
        IdentifiableKind("+ASt", 88, "azure_storage_key", "Storage account", (_seed("Default0"),)),
        IdentifiableKind("ACDb", 88, "azure_cosmos_key", "Cosmos DB", _COSMOS),
        IdentifiableKind("+ASb", 44, "azure_shared_access_key", "Service Bus", _MESSAGING),
        IdentifiableKind("+AEh", 44, "azure_shared_access_key", "Event Hubs", _MESSAGING),
        IdentifiableKind("+ARm", 44, "azure_shared_access_key", "Relay", _MESSAGING),
    )
}


def validate_base64_key(key: str, kind: IdentifiableKind) -> bool:
    """True when ``key`` has ``kind``'s shape and its checksum matches one of its seeds."""
    if len(key) != kind.length or key[kind.offset : kind.offset + 4] != kind.signature:
        return False
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return False
    body, given = raw[:-4], raw[-4:]
    return any(checksum32(body, seed) == given for seed in kind.seeds)


def generate_base64_key(signature: str, seed_index: int = 0) -> str:
    """A fresh, checksum-valid key of the kind with this signature (for tests and the corpus)."""
    kind = IDENTIFIABLE[signature]
    head = "".join(secrets.choice(BASE64_ALPHABET) for _ in range(kind.offset)) + signature
    if kind.length == 88:
        body = base64.b64decode(head)  # 80 characters: exactly 60 bytes
    else:
        body = base64.b64decode(head + "A==")  # 37 characters and two zero bits: 28 bytes
    return base64.b64encode(body + checksum32(body, kind.seeds[seed_index])).decode("ascii")
