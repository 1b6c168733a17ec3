"""The audit tables' rows and the values they hold: a row read back as a
:class:`~.chain.Record`, a :class:`~.chain.Checkpoint` or a :class:`~.heads.Heads` (a damaged
or forged one as a text saying so, never an exception), a value as the row written, and the one
text form of a record's time (it is hashed)."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Row

from ..core.times import utc_micro
from ..store.packing import pack, unpack
from .chain import Checkpoint, Record, canonical
from .heads import Heads

__all__ = [
    "after_place",
    "checkpoint_of",
    "checkpoint_row",
    "heads_of",
    "iso",
    "iso_at",
    "pack_all",
    "parse_iso",
    "record_of",
    "record_row",
]


def iso(at: datetime) -> str:
    """``2026-01-31T12:00:00.000000Z``: the one text form of a record's time (it is hashed)."""
    return utc_micro(at)


def iso_at(at: float) -> str:
    """:func:`iso` of the epoch time ``at`` (what ``iso(datetime.fromtimestamp(at, UTC))``
    gives), the date and time of day formatted once per second: one call per audit record."""
    frac, whole = math.modf(at)
    micro = round(frac * 1_000_000)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    return f"{_second_text(int(whole))}.{micro:06d}Z"


@functools.lru_cache(maxsize=8)
def _second_text(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def record_of(row: Row[Any]) -> Record:
    m = row._mapping
    return Record(
        seq=int(m["seq"]),
        created=iso(_aware(m["created_at"])),
        kind=m["kind"],
        data=m["data"] or _unpacked(m["packed"]),
        prev_hash=m["prev_hash"],
        hash=m["hash"],
        chain=m["chain"],
    )


def _unpacked(packed: bytes | None) -> str:
    """The JSON text of a packed record; for bytes that are none (damaged or forged, or a row
    with neither text nor packed value), a JSON text saying so, which never gives its hash."""
    try:
        return unpack(bytes(packed or b""))
    except ValueError as exc:
        return canonical({"unreadable": str(exc)})


def _aware(at: datetime | str) -> datetime:
    """A time read with a raw query (SQLite gives text there) as the typed column gives it."""
    if isinstance(at, str):
        return datetime.fromisoformat(at).replace(tzinfo=UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def checkpoint_of(row: Row[Any]) -> Checkpoint:
    m = row._mapping
    return Checkpoint(
        seq=int(m["seq"]),
        hash=m["hash"],
        created=iso(_aware(m["created_at"])),
        key_id=m["key_id"],
        signature=m["signature"],
        chain=m["chain"],
    )


def heads_of(row: Row[Any]) -> Heads | str:
    m = row._mapping
    try:
        obj = orjson.loads(m["heads"])
        obj["signature"] = m["signature"]
        return Heads.from_json(obj)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return f"head set {m['id']} ({m['created_at']}): not a head set (forged or damaged)"


def pack_all(items: Sequence[tuple[str, str, str]]) -> list[bytes]:
    return [pack(data) for _, _, data in items]


def record_row(r: Record, packed: bytes | None = None) -> dict[str, Any]:
    return {
        "chain": r.chain,
        "seq": r.seq,
        "created_at": parse_iso(r.created),
        "kind": r.kind,
        "data": "",
        "packed": pack(r.data) if packed is None else packed,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    }


def checkpoint_row(cp: Checkpoint) -> dict[str, Any]:
    return {
        "chain": cp.chain,
        "seq": cp.seq,
        "hash": cp.hash,
        "created_at": parse_iso(cp.created),
        "key_id": cp.key_id,
        "signature": cp.signature,
    }


def after_place(c: Any, place: tuple[datetime, str, int]) -> ColumnElement[bool]:
    """The rows of an audit table ``c`` (its columns) that come after ``place`` (created at,
    chain, seq) in time order: the condition of a keyset page."""
    at, chain, seq = place
    condition: ColumnElement[bool] = (
        (c.created_at > at)
        | ((c.created_at == at) & (c.chain > chain))
        | ((c.created_at == at) & (c.chain == chain) & (c.seq > seq))
    )
    return condition
