"""Gateway wiring for ``keyguard scan --config ... [--respond]`` (TO BE FILLED BY THE GATEWAY).

The scanner itself never needs the gateway: these three small async functions are the only
seam. Until they are wired, ``--config``/``--respond`` fail with a clear configuration error,
and every other scanner feature works.

* ``gateway_fingerprint_key(config_path)``: the vault's fingerprint key (``keyguard/
  fingerprint-key``), so scan fingerprints equal the vault's ``Vault.fingerprint(value)``.
* ``managed_fingerprints(config_path)``: fingerprint -> ``ManagedSecretRef`` for every
  upstream key in the vault and every live Keyguard key.
* ``apply_responses(config_path, actions, events)``: emit the ``SecretLeakDetected`` events
  and carry out the actions (rotate the upstream key; revoke or rotate the Keyguard key).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from keyguard.errors import ConfigurationError
from keyguard.scan.respond import ManagedSecretRef, ResponseAction, SecretLeakDetected

__all__ = ["apply_responses", "gateway_fingerprint_key", "managed_fingerprints"]

_NOT_WIRED = "the scanner is not wired to the gateway yet (keyguard.scan.gateway)"


async def gateway_fingerprint_key(config_path: Path) -> bytes:
    """GATEWAY WIRING: open the vault from ``config_path`` and return its fingerprint key."""
    raise ConfigurationError(f"--config {config_path}: {_NOT_WIRED}")


async def managed_fingerprints(config_path: Path) -> dict[str, ManagedSecretRef]:
    """GATEWAY WIRING: fingerprints of managed upstream keys and Keyguard keys."""
    raise ConfigurationError(f"--config {config_path}: {_NOT_WIRED}")


async def apply_responses(
    config_path: Path, actions: Sequence[ResponseAction], events: Sequence[SecretLeakDetected]
) -> None:
    """GATEWAY WIRING: emit the events and run the actions through the service functions."""
    raise ConfigurationError(f"--config {config_path}: {_NOT_WIRED}")
