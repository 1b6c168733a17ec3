"""The audit log's hash chain and its verification: pure functions over rows.

Each record is ``(seq, created, kind, data)`` where ``data`` is canonical JSON (sorted keys, no
spaces). Its hash covers its position, its time, its kind, the previous record's hash and the
data::

    hash(n) = SHA-256( "<seq>\\n<created>\\n<kind>\\n<hash(n-1)>\\n" + data )

so editing, deleting, inserting or reordering a record breaks the chain at that record. Someone
able to rewrite the table could recompute every later hash; the Ed25519-signed checkpoints
(:mod:`.signing`) catch that, since they cannot re-sign without the vault's signing key.
:func:`verify` reports the first record that does not hold and every checkpoint that fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "GENESIS",
    "Record",
    "Checkpoint",
    "VerifyReport",
    "canonical",
    "link",
    "chain",
    "verify",
    "ChainVerifier",
]

GENESIS = "0" * 64


def canonical(data: Any) -> str:
    """The one JSON text of ``data`` that is hashed: sorted keys, compact, UTF-8."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def link(seq: int, created: str, kind: str, prev_hash: str, data: str) -> str:
    head = f"{seq}\n{created}\n{kind}\n{prev_hash}\n".encode()
    return hashlib.sha256(head + data.encode()).hexdigest()


@dataclass(slots=True)  # not frozen: cheaper to build, one per audit record
class Record:
    seq: int
    created: str  # ISO 8601 UTC, microseconds, "Z"
    kind: str  # "request", "admin", "security"
    data: str  # canonical JSON
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "record",
            "seq": self.seq,
            "created": self.created,
            "kind": self.kind,
            "data": orjson.loads(self.data),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Record:
        return cls(
            seq=int(obj["seq"]),
            created=str(obj["created"]),
            kind=str(obj["kind"]),
            data=canonical(obj["data"]),
            prev_hash=str(obj["prev_hash"]),
            hash=str(obj["hash"]),
        )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int  # the last record it seals
    hash: str  # that record's hash
    created: str
    key_id: str  # which signing key (fingerprint of its public key)
    signature: str  # base64 Ed25519 over :meth:`payload`

    def payload(self) -> bytes:
        return canonical(
            {"seq": self.seq, "hash": self.hash, "created": self.created, "key_id": self.key_id}
        ).encode()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "checkpoint",
            "seq": self.seq,
            "hash": self.hash,
            "created": self.created,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Checkpoint:
        return cls(
            seq=int(obj["seq"]),
            hash=str(obj["hash"]),
            created=str(obj["created"]),
            key_id=str(obj["key_id"]),
            signature=str(obj["signature"]),
        )


def chain(
    start_seq: int, prev_hash: str, items: Iterable[tuple[str, str, str]]
) -> Iterator[Record]:
    """Records for ``(created, kind, data)`` items appended after ``(start_seq - 1, prev_hash)``."""
    seq = start_seq
    for created, kind, data in items:
        digest = link(seq, created, kind, prev_hash, data)
        yield Record(seq, created, kind, data, prev_hash, digest)
        prev_hash = digest
        seq += 1


@dataclass
class VerifyReport:
    records: int = 0
    checkpoints: int = 0
    last_seq: int = 0
    last_sealed: int = 0  # highest seq covered by a valid checkpoint
    problems: list[str] = field(default_factory=list)
    first_bad: int | None = None  # seq of the first record that does not hold
    first_seq: int = 1

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsealed(self) -> int:
        return max(0, self.last_seq - self.last_sealed)


class ChainVerifier:
    """Incremental :func:`verify`: checkpoints first, then records fed in chain order, so a
    log of any length is checked in constant memory."""

    def __init__(
        self,
        checkpoints: Iterable[Checkpoint],
        check_signature: Callable[[Checkpoint], bool],
        *,
        partial: bool = False,
    ) -> None:
        self.report = VerifyReport()
        self._by_seq: dict[int, list[Checkpoint]] = {}
        for cp in checkpoints:
            self._by_seq.setdefault(cp.seq, []).append(cp)
        self._check_signature = check_signature
        self._partial = partial
        self._hashes: dict[int, str] = {}  # only at checkpointed positions
        self._expected, self._prev = 1, GENESIS

    def feed(self, rec: Record) -> None:
        report = self.report
        if self._partial and report.records == 0:
            self._expected, self._prev = rec.seq, rec.prev_hash
            report.first_seq = rec.seq
        report.records += 1
        if report.first_bad is None:
            problem = _check(rec, self._expected, self._prev)
            if problem is not None:
                report.first_bad = min(rec.seq, self._expected)
                report.problems.append(problem)
        if rec.seq in self._by_seq:
            self._hashes[rec.seq] = rec.hash
        self._expected, self._prev = rec.seq + 1, rec.hash
        report.last_seq = max(report.last_seq, rec.seq)

    def finish(self) -> VerifyReport:
        report = self.report
        for seq in sorted(self._by_seq):
            if seq < report.first_seq:
                continue  # before a partial export: not covered
            for cp in self._by_seq[seq]:
                report.checkpoints += 1
                if not self._check_signature(cp):
                    report.problems.append(
                        f"checkpoint at seq {seq} ({cp.created}): its signature is not valid "
                        "for a known public key (forged or edited checkpoint)"
                    )
                elif seq not in self._hashes:
                    report.problems.append(
                        f"checkpoint at seq {seq} ({cp.created}) seals a record that is "
                        f"missing: records up to seq {seq} were deleted"
                    )
                elif self._hashes[seq] != cp.hash:
                    report.problems.append(
                        f"checkpoint at seq {seq} ({cp.created}) does not match record {seq}: "
                        f"records up to seq {seq} were rewritten"
                    )
                elif report.first_bad is None or seq < report.first_bad:
                    report.last_sealed = max(report.last_sealed, seq)
        return report


def verify(
    records: Iterable[Record],
    checkpoints: Iterable[Checkpoint],
    check_signature: Callable[[Checkpoint], bool],
    *,
    partial: bool = False,
) -> VerifyReport:
    """Walk the chain from seq 1 (or, ``partial``, from the first record given, as in an
    export made with ``--since``); ``check_signature(checkpoint) -> bool``."""
    verifier = ChainVerifier(checkpoints, check_signature, partial=partial)
    for rec in records:
        verifier.feed(rec)
    return verifier.finish()


def _check(rec: Record, expected: int, prev: str) -> str | None:
    if rec.seq > expected:
        return (
            f"record {expected}: missing (records {expected}..{rec.seq - 1} were deleted, "
            f"the next one present is {rec.seq})"
        )
    if rec.seq < expected:
        return f"record {rec.seq}: out of order or duplicated after record {expected - 1}"
    if rec.prev_hash != prev:
        return (
            f"record {rec.seq}: does not follow record {rec.seq - 1} "
            "(inserted, reordered, or its predecessor was replaced)"
        )
    if link(rec.seq, rec.created, rec.kind, rec.prev_hash, rec.data) != rec.hash:
        return f"record {rec.seq}: its content does not match its hash (edited)"
    return None
