"""Appending audit records to the embedded SQLite store directly from the event loop.

The audit writes one row per request. Through the async engine every row is bound and stepped
in aiosqlite's worker thread, which takes the GIL back from the busy event loop once per row:
measured with ``bench/run`` (``keyguard`` against ``keyguard_core``), that thread handoff cost
more CPU than the audit's own work. Here the rows go through a plain :mod:`sqlite3` connection
on the event loop, in short transactions of at most :data:`CHUNK` rows (about half a
millisecond each), with a yield to the loop between two of them.

The loop never waits for a lock: the connection has no busy timeout, so when another
connection (the CLI, the gateway's own engine) holds the write lock, :meth:`append` raises
:class:`Busy` at once and the caller takes the async path, whose worker thread waits.
Only a database in a file qualifies (an in-memory database is private to its connection).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ..errors import StorageError
from ..store.packing import pack
from ..store.sql import sqlite_file
from .chain import START, Appended, Checkpoint, HeadMoved, Link, Position, Record, chain

__all__ = [
    "CHUNK",
    "INSERT",
    "INSERT_CHECKPOINT",
    "Busy",
    "SqliteAppender",
    "sqlite_file",
    "sqlite_rows",
    "sqlite_checkpoint",
]

CHUNK = 128  # rows per transaction

_HEAD = "SELECT seq, hash FROM audit_records WHERE chain = ? ORDER BY seq DESC LIMIT 1"
INSERT = (  # the engine's SQLite path uses it too, with :func:`sqlite_rows`
    "INSERT INTO audit_records (chain, seq, created_at, kind, data, packed, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, '', ?, ?, ?)"
)
INSERT_CHECKPOINT = (  # with :func:`sqlite_checkpoint`
    "INSERT INTO audit_checkpoints (chain, seq, hash, created_at, key_id, signature) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


class Busy(Exception):
    """Another connection holds the database's write lock right now."""


def sqlite_time(created: str) -> str:
    """:func:`~.store.iso` text in SQLAlchemy's SQLite DATETIME storage form (naive UTC)."""
    return created[:10] + " " + created[11:26]


def sqlite_rows(
    records: Sequence[Record], packed: Sequence[bytes] | None = None
) -> list[tuple[str, int, str, str, bytes, str, str]]:
    """The parameters of :data:`INSERT` for ``records``, their JSON packed
    (:mod:`keyguard.store.packing`; ``packed``: already, in the same order)."""
    packs = packed if packed is not None else [pack(r.data) for r in records]
    return [
        (r.chain, r.seq, sqlite_time(r.created), r.kind, p, r.prev_hash, r.hash)
        for r, p in zip(records, packs, strict=True)
    ]


def sqlite_checkpoint(cp: Checkpoint) -> tuple[str, int, str, str, str, str]:
    """The parameters of :data:`INSERT_CHECKPOINT` for ``cp``."""
    return (cp.chain, cp.seq, cp.hash, sqlite_time(cp.created), cp.key_id, cp.signature)


class SqliteAppender:
    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=0, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA synchronous = NORMAL")  # the engine set WAL mode on the file
            self._conn = conn
        return self._conn

    def append(
        self,
        items: Sequence[tuple[str, str, str]],
        link: Link,
        packed: Sequence[bytes] | None = None,
    ) -> Appended:
        """Chain ``(created, kind, canonical data)`` items as ``link`` says and insert them
        with their checkpoint, in one transaction (``packed``: their data packed already);
        raises :class:`~.chain.HeadMoved` when the
        chain's head is not the one ``link`` expects and :class:`Busy` when the lock is taken
        (nothing written either way)."""
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise Busy from None
            raise StorageError(f"store: append audit records failed ({exc})") from None
        try:
            row = conn.execute(_HEAD, (link.chain,)).fetchone()
            head = Position(int(row[0]), str(row[1])) if row is not None else START
            after = link.start(head)
            records = list(chain(head.seq + 1, after.hash, items, link.chain))
            cp = link.seal(records[-1])
            conn.executemany(INSERT, sqlite_rows(records, packed))
            conn.execute(INSERT_CHECKPOINT, sqlite_checkpoint(cp))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not isinstance(exc, sqlite3.Error):
                raise
            if isinstance(exc, sqlite3.IntegrityError):  # a row at our seq: someone wrote
                raise HeadMoved(START) from None
            if _is_busy(exc):
                raise Busy from None
            raise StorageError(f"store: append audit records failed ({exc})") from None
        return Appended(records, [cp])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)
