"""Verify the audit log (in the store, or an exported file) and export it as JSON lines.

The CLI (``keyguard audit verify|export``) and any admin endpoint call these functions.
An export holds every record (``{"type": "record", ...}``) in chain order, each checkpoint
(``{"type": "checkpoint", ...}``) right after the record it seals; ``verify_lines`` checks such
a file on its own, with only the public key. Anchors (:mod:`.anchor`) are checked alongside:
``anchors`` is ``(name, line, checkpoint)`` for every anchored checkpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime

import orjson

from ..errors import ConfigurationError
from .chain import Checkpoint, Record, canonical
from .store import AuditStore
from .verify import ChainVerifier, VerifyReport

__all__ = ["verify_store", "verify_lines", "export_lines", "Anchored"]

CheckSignature = Callable[[Checkpoint], bool]
Anchored = tuple[str, int, Checkpoint]  # (file, line, checkpoint)


class _Walk:
    """Feeds a verifier records in order, each followed by the checkpoints and anchored
    checkpoints at its seq (both given in seq order)."""

    def __init__(self, verifier: ChainVerifier, anchors: Iterable[Anchored]) -> None:
        self.verifier = verifier
        self._anchors = sorted(anchors, key=lambda a: a[2].seq, reverse=True)

    def record(self, rec: Record, checkpoints: list[Checkpoint]) -> None:
        self.verifier.feed(rec)
        for cp in checkpoints:
            self.verifier.seal(cp)
        self._anchored(rec.seq)

    def _anchored(self, upto: int) -> None:
        while self._anchors and self._anchors[-1][2].seq <= upto:
            name, line, cp = self._anchors.pop()
            self.verifier.seal(cp, anchor=f"{name}:{line}")

    def finish(self, leftover: Iterable[Checkpoint]) -> VerifyReport:
        for cp in leftover:
            self.verifier.seal(cp)
        self._anchored(2**63)
        return self.verifier.finish()


async def verify_store(
    store: AuditStore, check: CheckSignature, anchors: Iterable[Anchored] = ()
) -> VerifyReport:
    """Verify the log as it is now: up to the head read first (a batch committed meanwhile
    is left for the next run; its checkpoint is committed with it)."""
    head = await store.head()
    walk = _Walk(ChainVerifier((), check), anchors)
    checkpoints = store.checkpoints(upto=head.seq).__aiter__()
    waiting: Checkpoint | None = await anext(checkpoints, None)
    async for rec in store.records(upto=head.seq):
        sealing: list[Checkpoint] = []
        while waiting is not None and waiting.seq <= rec.seq:
            sealing.append(waiting)
            waiting = await anext(checkpoints, None)
        walk.record(rec, sealing)
    rest = [] if waiting is None else [waiting, *[cp async for cp in checkpoints]]
    return walk.finish(rest)


def verify_lines(
    lines: Iterable[str], check: CheckSignature, anchors: Iterable[Anchored] = ()
) -> VerifyReport:
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
    partial = bool(records) and records[0].seq != 1
    walk = _Walk(ChainVerifier(checkpoints, check, partial=partial), anchors)
    for record in records:
        walk.record(record, [])
    return walk.finish([])


async def export_lines(store: AuditStore, since: datetime | None) -> AsyncIterator[str]:
    head = await store.head()
    checkpoints = store.checkpoints(since=since, upto=head.seq).__aiter__()
    waiting: Checkpoint | None = await anext(checkpoints, None)
    async for record in store.records(since=since, upto=head.seq):
        yield canonical(record.to_json())
        while waiting is not None and waiting.seq <= record.seq:
            yield canonical(waiting.to_json())
            waiting = await anext(checkpoints, None)
