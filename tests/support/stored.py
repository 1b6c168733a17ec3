"""What a test reads back from a gateway's SQLite store: the audit records' JSON (unpacked:
the store keeps most of them deflated, :mod:`keyguard.store.packing`) and, for canary
searches, every byte of the store with those texts added (a secret inside a packed record
would not show in the raw bytes)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from keyguard.store.packing import unpack

__all__ = ["audit_texts", "stored_bytes", "record_text"]


def record_text(data: str | None, packed: bytes | None) -> str:
    """The JSON of an audit row from its ``data`` and ``packed`` columns."""
    return data if data else unpack(packed or b"")


def audit_texts(db: Path, kinds: Iterable[str] = ()) -> list[str]:
    """The JSON of every audit record in the SQLite store ``db`` (of ``kinds``, if given), in
    chain order."""
    wanted = tuple(kinds)
    where = f" where kind in ({','.join('?' * len(wanted))})" if wanted else ""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            f"select data, packed from audit_records{where} order by chain, seq", wanted
        ).fetchall()
    return [record_text(data, packed) for data, packed in rows]


def stored_bytes(folder: Path) -> bytes:
    """Every byte of the store files in ``folder`` (``keyguard.db*``) and the audit records'
    JSON: what a canary search must look through."""
    raw = b"".join(p.read_bytes() for p in sorted(folder.glob("keyguard.db*")))
    db = folder / "keyguard.db"
    texts = "\n".join(audit_texts(db)) if db.exists() else ""
    return raw + b"\n" + texts.encode()
