"""The audit log's hash chains: pure functions over rows.

Each writer (a gateway process, a CLI command) appends to a chain of its own, named by its id,
so writers never wait for each other. Each record is ``(chain, seq, created, kind, data)``
where ``data`` is canonical JSON (sorted keys, no spaces). Its hash covers its chain and
position, its time, its kind, the previous record's hash and the data::

    hash(n) = SHA-256( "<chain>/<seq>\\n<created>\\n<kind>\\n<hash(n-1)>\\n" + data )

(records of the single shared chain of earlier versions, ``chain == ""``, keep
``"<seq>\\n..."``). Signed head sets (:mod:`.heads`) commit every writer's head together.

Editing, deleting, inserting or reordering a record breaks the chain at that record. Someone
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


def link(seq: int, created: str, kind: str, prev_hash: str, data: str, chain: str = "") -> str:
    """A record's hash; a writer's own chain (``chain``: its id) is named in it, so a record
    copied into another writer's chain does not verify there. The shared chain of earlier
    versions (``chain == ""``) keeps its formula, so its records verify as they were written."""
    place = f"{chain}/{seq}" if chain else str(seq)
    head = f"{place}\n{created}\n{kind}\n{prev_hash}\n".encode()
    return hashlib.sha256(head + data.encode()).hexdigest()


@dataclass(slots=True)  # not frozen: cheaper to build, one per audit record
class Record:
    seq: int
    created: str  # ISO 8601 UTC, microseconds, "Z"
    kind: str  # "request", "admin", "security"
    data: str  # canonical JSON
    prev_hash: str
    hash: str
    chain: str = ""  # the writer whose chain it is ("": the shared chain of earlier versions)

    @property
    def position(self) -> Position:
        return Position(self.seq, self.hash)

    def intact(self) -> bool:
        """Whether its content still gives its hash (not edited)."""
        digest = link(self.seq, self.created, self.kind, self.prev_hash, self.data, self.chain)
        return digest == self.hash

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "record",
            **({"chain": self.chain} if self.chain else {}),
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
            chain=_chain_of(obj),
        )


def _chain_of(obj: dict[str, Any]) -> str:
    chain = obj.get("chain", "")
    if not isinstance(chain, str) or len(chain) > 64:
        raise ValueError("chain")
    return chain


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int  # the last record it seals
    hash: str  # that record's hash
    created: str
    key_id: str  # which signing key (fingerprint of its public key)
    signature: str  # base64 Ed25519 over :meth:`payload`
    chain: str = ""  # the writer's chain it seals ("": the shared chain of earlier versions)

    def _replace_signature(self, signature: str) -> Checkpoint:
        return Checkpoint(self.seq, self.hash, self.created, self.key_id, signature, self.chain)

    def payload(self) -> bytes:
        fields: dict[str, Any] = {
            "seq": self.seq,
            "hash": self.hash,
            "created": self.created,
            "key_id": self.key_id,
        }
        if self.chain:  # signed too: a checkpoint cannot be moved to another writer's chain
            fields["chain"] = self.chain
        return canonical(fields).encode()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "checkpoint",
            **({"chain": self.chain} if self.chain else {}),
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
            chain=_chain_of(obj),
        )


def chain(
    start_seq: int, prev_hash: str, items: Iterable[tuple[str, str, str]], name: str = ""
) -> Iterator[Record]:
    """Records for ``(created, kind, data)`` items appended after ``(start_seq - 1, prev_hash)``
    in the chain ``name``."""
    seq = start_seq
    for created, kind, data in items:
        digest = link(seq, created, kind, prev_hash, data, name)
        yield Record(seq, created, kind, data, prev_hash, digest, name)
        prev_hash = digest
        seq += 1


class HeadMoved(Exception):
    """An append found its chain's head elsewhere than the writer left it (someone else wrote
    to, or cut, that writer's chain): nothing was written."""

    def __init__(self, head: Position) -> None:
        super().__init__(f"the audit chain's head is at seq {head.seq}")
        self.head = head


class Appended(NamedTuple):
    """What one append committed: the records and the checkpoints sealing them."""

    records: list[Record]
    checkpoints: list[Checkpoint]


#: ``seal(last record of a transaction)``: the checkpoint committed with it.
Seal = Callable[[Record], Checkpoint]


class Link(NamedTuple):
    """How an append joins a chain: the head the writer holds (the chain's last record, as it
    left it), the checkpoint it commits with its last record, and the chain (its own)."""

    expect: Position
    seal: Seal
    chain: str = ""

    def start(self, head: Position) -> Position:
        """Where the first record links, given the head found in the transaction; raises
        :class:`HeadMoved` when it is not the one expected."""
        if head != self.expect:
            raise HeadMoved(head)
        return head

    def next(self, last: Position) -> Link:
        """The link of the next chunk of the same append, after ``last``."""
        return self._replace(expect=last)
