"""Verify the audit log (in the store, or an exported file) and export it as JSON lines.

The CLI (``keyguard audit verify|export``) and any admin endpoint call these functions.
An export holds every record (``{"type": "record", ...}``) in chain order, each checkpoint
(``{"type": "checkpoint", ...}``) right after the record it seals; ``verify_lines`` checks such
a file on its own, with only the public key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime

import orjson

from ..errors import ConfigurationError
from .chain import ChainVerifier, Checkpoint, Record, VerifyReport, canonical
from .store import AuditStore

__all__ = ["verify_store", "verify_lines", "export_lines"]

CheckSignature = Callable[[Checkpoint], bool]


async def verify_store(store: AuditStore, check: CheckSignature) -> VerifyReport:
    verifier = ChainVerifier(await store.checkpoints(), check)
    async for record in store.records():
        verifier.feed(record)
    return verifier.finish()


def verify_lines(lines: Iterable[str], check: CheckSignature) -> VerifyReport:
    """Verify an export; one that starts after seq 1 (``--since``) is checked from its start."""
    records: list[Record] = []
    checkpoints: list[Checkpoint] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            if obj.get("type") == "checkpoint":
                checkpoints.append(Checkpoint.from_json(obj))
            else:
                records.append(Record.from_json(obj))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise ConfigurationError(f"line {number}: not an audit export record") from None
    verifier = ChainVerifier(checkpoints, check, partial=bool(records) and records[0].seq != 1)
    for record in records:
        verifier.feed(record)
    return verifier.finish()


async def export_lines(store: AuditStore, since: datetime | None) -> AsyncIterator[str]:
    checkpoints: dict[int, list[Checkpoint]] = {}
    for cp in await store.checkpoints(since=since):
        checkpoints.setdefault(cp.seq, []).append(cp)
    async for record in store.records(since=since):
        yield canonical(record.to_json())
        for cp in checkpoints.pop(record.seq, []):
            yield canonical(cp.to_json())
