"""The audit log's hash chain and its verification: pure functions over rows.

Each record is ``(seq, created, kind, data)`` where ``data`` is canonical JSON (sorted keys, no
spaces). Its hash covers its position, its time, its kind, the previous record's hash and the
data::

    hash(n) = SHA-256( "<seq>\\n<created>\\n<kind>\\n<hash(n-1)>\\n" + data )

so editing, deleting, inserting or reordering a record breaks the chain at that record. Someone
able to rewrite the table could recompute every later hash; the Ed25519-signed checkpoints
(:mod:`.signing`) catch that, since they cannot re-sign without the vault's signing key. Every
batch a writer commits carries its checkpoint in the same transaction (:mod:`.writer`), so a
record no checkpoint covers was not written by Keyguard. :mod:`.verify` walks the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

__all__ = [
    "GENESIS",
    "START",
    "Position",
    "Record",
    "Checkpoint",
    "canonical",
    "canonical_bytes",
    "link",
    "chain",
    "HeadMoved",
    "Appended",
    "Accept",
    "Seal",
    "Link",
]

GENESIS = "0" * 64


class Position(NamedTuple):
    """A place in the chain: a record's ``seq`` and ``hash``; :data:`START` is before the first."""

    seq: int
    hash: str


START = Position(0, GENESIS)


def canonical(data: Any) -> str:
    """The one JSON text of ``data`` that is hashed: sorted keys, compact, UTF-8."""
    return canonical_bytes(data).decode()


def canonical_bytes(data: Any) -> bytes:
    """:func:`canonical` before decoding (its size in bytes is what a record's limit counts)."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


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

    @property
    def position(self) -> Position:
        return Position(self.seq, self.hash)

    def intact(self) -> bool:
        """Whether its content still gives its hash (not edited)."""
        return link(self.seq, self.created, self.kind, self.prev_hash, self.data) == self.hash

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


class HeadMoved(Exception):
    """An append found the chain's head elsewhere than the writer expected, and no checkpoint
    it accepts seals that head: nothing was written."""

    def __init__(self, head: Position) -> None:
        super().__init__(f"the audit chain's head is at seq {head.seq}")
        self.head = head


class Appended(NamedTuple):
    """What one append committed: the records and the checkpoints sealing them."""

    records: list[Record]
    checkpoints: list[Checkpoint]


#: ``accept(head, checkpoints at its seq)``: may a writer link to a head it did not expect?
Accept = Callable[[Position, list[Checkpoint]], bool]
#: ``seal(last record of a transaction)``: the checkpoint committed with it.
Seal = Callable[[Record], Checkpoint]


class Link(NamedTuple):
    """How an append joins the chain: the head the writer expects, the checkpoint it commits
    with its last record, where its first record links (default: that head), and whether it
    takes another head it finds instead."""

    expect: Position
    seal: Seal
    after: Position | None = None
    accept: Accept | None = None

    def wants_checkpoints(self, head: Position) -> bool:
        """Whether :meth:`start` needs the checkpoints at ``head`` (read them only then)."""
        return head != self.expect and self.accept is not None

    def start(self, head: Position, held: list[Checkpoint]) -> Position:
        """Where the first record links, given the head found in the transaction (and the
        checkpoints at its seq); raises :class:`HeadMoved` when it cannot be written."""
        if head == self.expect:
            return self.after or self.expect
        if self.accept is None or not self.accept(head, held):
            raise HeadMoved(head)
        return head

    def next(self, last: Position) -> Link:
        """The link of the next chunk of the same append, after ``last``."""
        return self._replace(expect=last, after=last)
