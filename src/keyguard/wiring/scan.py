"""The scanner's link to a gateway: ``keyguard scan --config keyguard.yaml [--respond]``.

* :func:`gateway_fingerprint_key` returns the vault's fingerprint key, so the fingerprints the
  scanner reports equal ``Vault.fingerprint(value)``: a finding can be matched against managed
  secrets without the scanner, the report or the store ever holding a managed secret in plain.
* :func:`managed_fingerprints` maps the fingerprint of every managed secret to what it is: the
  current version of each upstream key in the vault (``upstream/...``), and every live Keyguard
  key (its fingerprint is recorded when the key is issued).
* :func:`apply_responses` records each leak as a high-severity ``SecurityEvent`` and carries
  out the planned actions through the gateway's own service functions: revoke (or rotate) the
  Keyguard key; rotate the upstream key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path

from keyguard.config import load_settings
from keyguard.errors import ConfigurationError, GatewayError
from keyguard.events import SecurityEvent
from keyguard.keys.service import key_state
from keyguard.scan.respond import ManagedSecretRef, ResponseAction, SecretLeakDetected
from keyguard.vault.vault import FINGERPRINT_KEY
from keyguard.wiring.runtime import Runtime, runtime

__all__ = ["apply_responses", "gateway_fingerprint_key", "managed_fingerprints"]

UPSTREAM_PREFIX = "upstream/"


def _open(config_path: Path) -> AbstractAsyncContextManager[Runtime]:
    return runtime(load_settings(config_path), os.environ)


async def gateway_fingerprint_key(config_path: Path) -> bytes:
    async with _open(config_path) as rt:
        return await rt.vault.get_or_create_random(FINGERPRINT_KEY)


async def managed_fingerprints(config_path: Path) -> dict[str, ManagedSecretRef]:
    async with _open(config_path) as rt:
        return await _managed(rt, datetime.now(UTC))


async def _managed(rt: Runtime, now: datetime) -> dict[str, ManagedSecretRef]:
    managed: dict[str, ManagedSecretRef] = {}
    for info in await rt.vault.list():
        if not info.name.startswith(UPSTREAM_PREFIX):
            continue
        sealed = await rt.store.get_secret(info.name)
        if sealed is not None:
            managed[sealed.fingerprint] = ManagedSecretRef("upstream", info.name, "upstream key")
    for record in await rt.store.list_keys(include_revoked=False):
        if record.fingerprint and key_state(record, now) in ("active", "suspended"):
            managed[record.fingerprint] = ManagedSecretRef(
                "keyguard", record.key_id, f"Keyguard key of {record.app}"
            )
    return managed


async def apply_responses(
    config_path: Path, actions: Sequence[ResponseAction], events: Sequence[SecretLeakDetected]
) -> None:
    async with _open(config_path) as rt:
        for leak in events:
            rt.events.emit(
                SecurityEvent(
                    created=leak.created,
                    kind="leaked_key",
                    severity="critical",
                    summary=f"A managed {leak.managed_kind} key was found at {leak.location}.",
                    key_id=leak.ref if leak.managed_kind == "keyguard" else None,
                    upstream=_upstream_name(leak.ref) if leak.managed_kind == "upstream" else None,
                    source=leak.location,
                    evidence={"fingerprint": leak.fingerprint, "kind": leak.kind,
                              "commit": leak.commit or ""},
                )
            )  # fmt: skip
        for action in actions:
            await _apply(rt, action)


def _upstream_name(secret_name: str) -> str:
    return secret_name.removeprefix(UPSTREAM_PREFIX)


async def _apply(rt: Runtime, action: ResponseAction) -> None:
    now = datetime.now(UTC)
    if action.action == "revoke_keyguard_key":
        await rt.keys.revoke(action.ref, now=now)
    elif action.action == "rotate_keyguard_key":
        from keyguard.wiring.rotation import rotate_leaked_key

        await rotate_leaked_key(rt, action.ref, now=now)
    elif action.action == "rotate_upstream":
        from keyguard.wiring.rotation import rotate_upstream_for_secret

        try:
            await rotate_upstream_for_secret(rt, action.ref, reason="leaked_key", now=now)
        except GatewayError as exc:
            raise ConfigurationError(
                f"the leaked upstream key {action.ref} could not be rotated: {exc}"
            ) from exc
