"""Segments: each writer's stretch of the chain, opened and closed by records of its own.

A writer (a gateway process, a CLI command) starts by writing a ``segment`` record::

    {"event": "open", "writer": "<id>", "after": {"seq": 41, "hash": "..."}, "found": [...]}

``after`` is where it links: the newest record sealed by a valid checkpoint (or the start of an
empty log). Its ``prev_hash`` is that record's hash, so records after ``after`` that no
checkpoint covers (written by someone without the signing key) are left out of the chain, and
``found`` says what the writer found wrong before it started. A clean stop ends the segment with
``{"event": "close", "writer": "<id>", "records": N}``, sealed by the writer's last checkpoint.

:func:`plan_open` decides where a writer starts and what it reports, from a :class:`Tail` (what
the store holds at the end of the chain, surveyed by :mod:`.tail`): a pure function.

Writers share one chain today (a head another writer sealed is linked to). Everything a chain
per writer needs is already each writer's own: its id, its head, its seals, its segment's open
and close records; such chains would link only to their own head, and a periodic checkpoint
would commit every writer's head together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .chain import START, Checkpoint, Position, Record

__all__ = [
    "KIND",
    "Segment",
    "Tail",
    "open_data",
    "close_data",
    "parse_segment",
    "plan_open",
]

KIND = "segment"
MAX_FOUND = 20  # findings kept in one open record


@dataclass(frozen=True, slots=True)
class Segment:
    event: str  # "open" or "close"
    writer: str
    after: Position | None = None  # open: where it links
    found: tuple[str, ...] = ()  # open: what was wrong before it


def open_data(writer: str, after: Position, found: list[str]) -> dict[str, Any]:
    return {
        "event": "open",
        "writer": writer,
        "after": {"seq": after.seq, "hash": after.hash},
        "found": found[:MAX_FOUND],
    }


def close_data(writer: str, records: int) -> dict[str, Any]:
    return {"event": "close", "writer": writer, "records": records}


def parse_segment(record: Record) -> Segment | None:
    """The segment a ``segment`` record opens or closes; ``None`` for any other record, or for
    one that is malformed (a forged record may hold anything)."""
    if record.kind != KIND:
        return None
    try:
        data = orjson.loads(record.data)
        event, writer = data["event"], data["writer"]
        if not isinstance(event, str) or not isinstance(writer, str):
            return None
        if event != "open":
            return Segment(event, writer)
        after = data["after"]
        seq, digest = after["seq"], after["hash"]
        found = data.get("found") or []
        if type(seq) is not int or not isinstance(digest, str) or not isinstance(found, list):
            return None
        return Segment(event, writer, Position(seq, digest), tuple(str(f) for f in found))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class Tail:
    """The end of the chain as a writer found it (:func:`~.tail.survey`)."""

    head: Position  # the store's last record (START when empty)
    sealed: Position  # the newest record sealed by a valid checkpoint and intact (or START)
    problems: tuple[str, ...] = ()  # checkpoints found forged, missing their record, ...
    anchored: Checkpoint | None = None  # the newest valid checkpoint in the anchor
    anchored_found: str | None = None  # the store's hash at that checkpoint's seq, if any
    own_found: str | None = None  # the store's hash at this writer's own head, if any


def plan_open(tail: Tail, own: Position | None = None) -> tuple[Position, list[str]]:
    """Where a writer starts (its segment's ``after``) and what it found wrong: the newest
    sealed record, and every reason the records after it or before it cannot be trusted.
    ``own`` is the head a running writer holds (``None`` at start)."""
    found = list(tail.problems)
    sealed, head = tail.sealed, tail.head
    if head.seq > sealed.seq:
        first = sealed.seq + 1
        span = f"record {first} is" if first == head.seq else f"records {first}..{head.seq} are"
        found.append(
            f"{span} not sealed (the last signed checkpoint is at seq {sealed.seq}): written "
            "by someone without the signing key; left out of the chain"
        )
    cp = tail.anchored
    if cp is not None:
        if cp.seq > head.seq:
            found.append(
                f"the anchor holds a checkpoint at seq {cp.seq} ({cp.created}) but the log "
                f"ends at seq {head.seq}: the newest records were deleted with their checkpoints"
            )
        elif tail.anchored_found is None:
            found.append(f"record {cp.seq}, sealed by an anchored checkpoint, is missing")
        elif tail.anchored_found != cp.hash:
            found.append(f"record {cp.seq} does not match its anchored checkpoint (rewritten)")
    if own is not None and own != START:
        if own.seq > head.seq:
            found.append(
                f"records up to seq {own.seq} written by this writer are gone: the log ends "
                f"at seq {head.seq}"
            )
        elif tail.own_found != own.hash:
            found.append(f"record {own.seq} written by this writer was deleted or replaced")
    return sealed, found
