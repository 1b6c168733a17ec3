"""Fresh, format-valid (and, where the format has one, checksum-valid) test credentials.

For test fixtures and the scanner's labelled corpus: every value is generated at run time,
so nothing real-looking is ever committed. None of these values is usable anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import string
from collections.abc import Callable

from keyguard.azure_keys import generate_identifiable_key, generate_legacy_key
from keyguard.keys.format import generate_key
from keyguard.scan.identifiable import generate_base64_key

__all__ = ["GENERATORS", "expected_kind", "generate"]

_ALNUM = string.ascii_letters + string.digits
_URLSAFE = _ALNUM + "-_"


def _rand(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def azure_key(arg: str = "") -> str:
    """``AZURE[:service][,base62]``: an 84-character identifiable key."""
    service, _, enc = (arg or "openai").partition(",")
    return generate_identifiable_key(service or "openai", checksum_encoding=enc or "base64")


def legacy_key(arg: str = "") -> str:
    """A legacy 32-hex Azure AI services key."""
    return generate_legacy_key()


def keyguard_key(arg: str = "") -> str:
    """A checksum-valid Keyguard key (never stored anywhere)."""
    return generate_key().full


def openai_key(arg: str = "") -> str:
    """``SK[:proj|svcacct|admin|user]``: an OpenAI-shaped key with the ``T3BlbkFJ`` marker."""
    if arg == "user":
        return f"sk-{_rand(_ALNUM, 20)}T3BlbkFJ{_rand(_ALNUM, 20)}"
    prefix = {"svcacct": "sk-svcacct-", "admin": "sk-admin-"}.get(arg, "sk-proj-")
    return f"{prefix}{_rand(_URLSAFE, 74)}T3BlbkFJ{_rand(_URLSAFE, 74)}"


def entra_secret(arg: str = "") -> str:
    """An Entra ID client secret: 3 characters, ``8Q~``, 34 characters."""
    alphabet = _ALNUM + "_~.-"
    return f"{_rand(alphabet, 3)}8Q~{_rand(alphabet, 34)}"


def storage_key(arg: str = "") -> str:
    """An 88-character base64 Azure Storage account key (64 random bytes)."""
    return base64.b64encode(secrets.token_bytes(64)).decode("ascii")


def storage_identifiable_key(arg: str = "") -> str:
    """An identifiable Storage key (``+ASt``), checksum-valid."""
    return generate_base64_key("+ASt")


def cosmos_key(arg: str = "") -> str:
    """An 88-character base64 Cosmos DB account key (64 random bytes)."""
    return storage_key()


def cosmos_identifiable_key(arg: str = "") -> str:
    """An identifiable Cosmos DB key (``ACDb``), checksum-valid."""
    return generate_base64_key("ACDb")


def shared_access_key(arg: str = "") -> str:
    """A 44-character base64 Service Bus / Event Hubs / Relay shared access key."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


_SHARED_SIGNATURES = {"servicebus": "+ASb", "eventhubs": "+AEh", "relay": "+ARm"}


def shared_identifiable_key(arg: str = "") -> str:
    """``SHARED_ID[:servicebus|eventhubs|relay]``: an identifiable shared access key."""
    return generate_base64_key(_SHARED_SIGNATURES[arg or "servicebus"], 2)


def sas_signature(arg: str = "") -> str:
    """The ``sig`` of a shared access signature: base64 of an HMAC-SHA256 (32 bytes)."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def jwt(arg: str = "") -> str:
    """A signed HS256 JWT with a random secret (``JWT:sample`` signs with jwt.io's secret)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": _rand(string.digits, 10), "name": "svc-reporting", "iat": 1735689600}
    payload = _b64url(json.dumps(claims).encode())
    key = b"your-256-bit-secret" if arg == "sample" else secrets.token_bytes(32)
    sig = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(sig)}"


def bearer_token(arg: str = "") -> str:
    return _rand(_ALNUM, 24) + "." + _rand(_URLSAFE, 40)


# Look-alikes and non-secrets (negatives for the corpus).
def azure_lookalike(arg: str = "") -> str:
    """An 84-character key with a broken checksum."""
    key = generate_identifiable_key("openai")
    last = key[-1]
    return key[:-1] + ("A" if last != "A" else "B")


def keyguard_lookalike(arg: str = "") -> str:
    key = generate_key().full
    return key[:-1] + ("0" if key[-1] != "0" else "1")


def hex32(arg: str = "") -> str:
    return secrets.token_hex(16)


def uuid_hex(arg: str = "") -> str:
    return secrets.token_hex(16)


def uuid(arg: str = "") -> str:
    h = secrets.token_hex(16)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def sha1(arg: str = "") -> str:
    return secrets.token_hex(20)


def sha256(arg: str = "") -> str:
    return secrets.token_hex(32)


def integrity(arg: str = "") -> str:
    return "sha512-" + base64.b64encode(secrets.token_bytes(64)).decode("ascii")


def b64data(arg: str = "") -> str:
    return base64.b64encode(secrets.token_bytes(int(arg or 48))).decode("ascii")


GENERATORS: dict[str, Callable[[str], str]] = {
    "AZURE": azure_key,
    "LEGACY": legacy_key,
    "KGK": keyguard_key,
    "SK": openai_key,
    "ENTRA": entra_secret,
    "STORAGE": storage_key,
    "STORAGE_ID": storage_identifiable_key,
    "COSMOS": cosmos_key,
    "COSMOS_ID": cosmos_identifiable_key,
    "SHARED": shared_access_key,
    "SHARED_ID": shared_identifiable_key,
    "SAS": sas_signature,
    "JWT": jwt,
    "BEARER": bearer_token,
    "LOOKALIKE_AZURE": azure_lookalike,
    "LOOKALIKE_KGK": keyguard_lookalike,
    "HEX32": hex32,
    "UUIDHEX": uuid_hex,
    "UUID": uuid,
    "SHA1": sha1,
    "SHA256": sha256,
    "INTEGRITY": integrity,
    "B64DATA": b64data,
}

_AZURE_KINDS = {"openai": "azure_openai_key", "ai_services": "azure_ai_services_key"}


def expected_kind(gen: str, arg: str = "") -> str | None:
    """The finding kind a generated value must produce, or ``None`` for a negative."""
    if gen == "AZURE":
        service = (arg or "openai").partition(",")[0] or "openai"
        return _AZURE_KINDS.get(service, "azure_cognitive_services_key")
    if gen == "JWT" and arg == "sample":
        return None
    return {
        "LEGACY": "azure_legacy_key",
        "KGK": "keyguard_key",
        "SK": "openai_key",
        "ENTRA": "entra_client_secret",
        "STORAGE": "azure_storage_key",
        "STORAGE_ID": "azure_storage_key",
        "COSMOS": "azure_cosmos_key",
        "COSMOS_ID": "azure_cosmos_key",
        "SHARED": "azure_shared_access_key",
        "SHARED_ID": "azure_shared_access_key",
        "SAS": "azure_sas_signature",
        "JWT": "jwt",
        "BEARER": "bearer_token",
    }.get(gen)


def generate(gen: str, arg: str = "") -> str:
    try:
        return GENERATORS[gen](arg)
    except KeyError:
        raise ValueError(f"unknown generator {gen!r}; use one of {sorted(GENERATORS)}") from None
