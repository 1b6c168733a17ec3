"""Segments: each writer's stretch of the chain, opened and closed by records of its own.

A writer (a gateway process, a CLI command) starts by writing a ``segment`` record::

    {"event": "open", "writer": "<id>", "after": {"seq": 41, "hash": "..."}, "found": [...]}

Each writer has a chain of its own (:mod:`.chain`): its segment is that whole chain, its open
record is seq 1 and links to the start (``after`` is seq 0), and ``found`` says what the writer
found wrong before it started (:mod:`.tail`). A clean stop ends the segment with
``{"event": "close", "writer": "<id>", "records": N}``, sealed by the writer's last checkpoint.

In the shared chain of earlier versions (``chain == ""``) several writers' segments follow one
another, and ``after`` was the newest record sealed by a valid checkpoint when that writer
started: records after it that no checkpoint covers were left out of the chain. The verifier
(:mod:`.verify`) still reads such chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .chain import Position, Record

__all__ = [
    "KIND",
    "Segment",
    "open_data",
    "close_data",
    "parse_segment",
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
