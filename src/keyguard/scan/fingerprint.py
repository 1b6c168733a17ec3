"""Keyed fingerprints of secrets: HMAC-SHA256, so a report never carries the secret itself.

The same function fingerprints a leaked candidate and a managed key, so a leak can be matched
to the key it is without the scanner ever holding managed plaintexts. The key comes from, in
order: ``--fingerprint-key-file``, ``KEYGUARD_FINGERPRINT_KEY``, the gateway configuration
(``--config``). Without any, a fixed, documented, domain-separated key is used: fingerprints
then only deduplicate and baseline; they are not secret from anyone who has the scanner (but
fingerprints of high-entropy secrets cannot be reversed either way).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from keyguard.errors import ConfigurationError

__all__ = [
    "DEFAULT_FINGERPRINT_KEY",
    "ENV_VAR",
    "FingerprintKey",
    "fingerprint",
    "resolve_fingerprint_key",
]

ENV_VAR = "KEYGUARD_FINGERPRINT_KEY"
DEFAULT_FINGERPRINT_KEY = hashlib.sha256(b"keyguard/scan/fingerprint/v1/public-default").digest()


@dataclass(frozen=True, slots=True)
class FingerprintKey:
    key: bytes
    source: str  # "file", "env", "config" or "default"

    @property
    def key_id(self) -> str:
        """A public identifier of the key, so a baseline made with another key is noticed."""
        return hmac.new(self.key, b"keyguard/scan/key-id", hashlib.sha256).hexdigest()[:16]


def fingerprint(secret: str, key: bytes) -> str:
    """Hex HMAC-SHA256 of the secret exactly as found (the vault fingerprints the same way)."""
    return hmac.new(key, secret.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def _decode_key(text: str, where: str) -> bytes:
    value = text.strip()
    if not value:
        raise ConfigurationError(f"{where}: the fingerprint key is empty")
    if len(value) >= 32 and len(value) % 2 == 0:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    return value.encode("utf-8")


def resolve_fingerprint_key(
    key_file: Path | None,
    environ: Mapping[str, str],
    config_key: bytes | None = None,
) -> FingerprintKey:
    """Pick the fingerprint key: file, then environment, then gateway config, then default."""
    if key_file is not None:
        try:
            text = key_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"--fingerprint-key-file: cannot read {key_file}") from exc
        return FingerprintKey(_decode_key(text, "--fingerprint-key-file"), "file")
    if environ.get(ENV_VAR):
        return FingerprintKey(_decode_key(environ[ENV_VAR], ENV_VAR), "env")
    if config_key is not None:
        return FingerprintKey(config_key, "config")
    return FingerprintKey(DEFAULT_FINGERPRINT_KEY, "default")
