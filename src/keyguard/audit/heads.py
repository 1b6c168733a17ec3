"""Head sets: one signed statement of where every writer's chain ended, so the trail is one.

Each writer appends to its own chain (:mod:`.chain`), so nothing in one chain says what the
others hold: someone able to write the tables could cut a writer's tail, or drop a whole chain,
and each remaining chain would still verify alone. Every ``checkpoint_interval_s`` each writer
therefore signs a *head set*: the newest checkpoint of every chain that moved recently (its own
included), with the time::

    {"type": "heads", "created": "...", "writer": "<id>", "key_id": "...",
     "heads": {"<chain>": [seq, "hash"], ...}, "signature": "..."}

``keyguard audit verify`` checks every head set it sees (in the store, an export, an anchor):
each head it names must be a record of that chain with that hash. A chain cut after a head set
named its end shows (``... seals a record past the end of the chain``); a writer that stopped
without closing its chain shows as a note. Head sets need no lock: each writer writes its own,
and any one of them is enough to tie the chains together at its time.

:func:`next_heads` is the pure choice of what a head set names: every chain whose newest
checkpoint moved within ``keep_s`` (a crashed writer's last head stays named that long), at
most :data:`MAX_HEADS` of them, the most recently moved first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .chain import Checkpoint, Position, canonical
from .signing import Signer

__all__ = ["MAX_HEADS", "Heads", "Carried", "sign_heads", "next_heads"]

MAX_HEADS = 4096  # chains one head set names, at most
_KIND = "heads"


@dataclass(frozen=True, slots=True)
class Heads:
    created: str
    writer: str  # who signed it
    heads: tuple[tuple[str, int, str], ...]  # (chain, seq, hash), sorted by chain
    key_id: str
    signature: str

    def payload(self) -> bytes:
        return canonical(
            {
                "type": _KIND,
                "created": self.created,
                "writer": self.writer,
                "key_id": self.key_id,
                "heads": {chain: [seq, digest] for chain, seq, digest in self.heads},
            }
        ).encode()

    def to_json(self) -> dict[str, Any]:
        return {**_loads(self.payload()), "signature": self.signature}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Heads:
        """Raises ``KeyError``, ``TypeError`` or ``ValueError`` for anything not a head set."""
        if obj.get("type") != _KIND:
            raise ValueError("not a head set")
        raw = obj["heads"]
        if not isinstance(raw, dict) or len(raw) > MAX_HEADS:
            raise ValueError("heads")
        heads = []
        for chain, (seq, digest) in sorted(raw.items()):
            if not isinstance(chain, str) or type(seq) is not int or not isinstance(digest, str):
                raise TypeError("heads")
            heads.append((chain, seq, digest))
        return cls(
            created=str(obj["created"]),
            writer=str(obj["writer"]),
            heads=tuple(heads),
            key_id=str(obj["key_id"]),
            signature=str(obj["signature"]),
        )


def _loads(raw: bytes) -> dict[str, Any]:
    import orjson

    value: dict[str, Any] = orjson.loads(raw)
    return value


def sign_heads(
    signer: Signer, created: str, writer: str, heads: Iterable[tuple[str, Position]]
) -> Heads:
    entries = tuple(sorted((chain, pos.seq, pos.hash) for chain, pos in heads))
    unsigned = Heads(created, writer, entries, signer.key_id, "")
    return Heads(created, writer, entries, signer.key_id, signer.signature(unsigned.payload()))


#: chain -> (its newest head known, when that head was last seen to move, epoch seconds)
Carried = dict[str, tuple[Position, float]]


def next_heads(
    carried: Carried,
    fresh: Iterable[Checkpoint],
    *,
    now: float,
    keep_s: float,
    check: Callable[[Checkpoint], bool],
    parse_time: Callable[[str], float],
) -> tuple[Carried, list[str]]:
    """The heads the next set names, from those carried and the newest checkpoint of each
    chain that moved since (``fresh``); and what was wrong: a checkpoint whose signature is not
    valid is never named (someone without the key wrote it), nor a head behind the one named
    before (a chain cut and rewritten shorter)."""
    found: list[str] = []
    heads = dict(carried)
    for cp in fresh:
        if not cp.chain:
            continue
        if not check(cp):
            found.append(
                f"checkpoint of writer {cp.chain} at seq {cp.seq} ({cp.created}): its signature "
                "is not valid (forged or edited); not named in the head set"
            )
            continue
        known = heads.get(cp.chain)
        if known is not None and cp.seq < known[0].seq:
            found.append(
                f"writer {cp.chain}: its newest checkpoint is at seq {cp.seq}, behind seq "
                f"{known[0].seq} named before (its newest records were deleted)"
            )
            continue
        if known is None or cp.seq > known[0].seq:
            heads[cp.chain] = (Position(cp.seq, cp.hash), max(parse_time(cp.created), 0.0))
    kept = {c: v for c, v in heads.items() if now - v[1] <= keep_s}
    if len(kept) > MAX_HEADS:
        newest = sorted(kept.items(), key=lambda item: item[1][1], reverse=True)[:MAX_HEADS]
        kept = dict(newest)
    return kept, found
