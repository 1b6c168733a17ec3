"""Partitions of the audit tables on PostgreSQL: one per day in which chains opened.

A writer's chain id starts with the time it opened: ``t`` + 8 hex digits of its epoch second +
7 random hex digits (:func:`chain_id`, 16 characters). Ids sort by that time, so the records
and checkpoints (``PARTITION BY RANGE (chain)``, migration 0008) keep each chain whole in the
partition of its day, and the primary key ``(chain, seq)`` still forbids a fork. Beside the day
partitions (``audit_records_p20261203``, ...) are the partition of the ids below ``'t'`` (the
log as it was before 0008, the shared chain ``''`` included) and a ``DEFAULT`` one, for chains
no day partition holds: a day not created in time, a writer whose clock is far off. No insert
fails for want of a partition.

* :func:`prepare` creates the partitions of today and the next :data:`AHEAD` days (the
  database's clock, not a writer's) when they are missing; each writer calls it when it opens
  a chain. ``CREATE TABLE`` then ``ATTACH PARTITION``: the parent is locked only against other
  DDL, the default partition briefly (it is read to check that none of its rows belongs in the
  new partition; such rows, a partition once missing, leave the day in the default one).
* :func:`remove` takes the chains archive just moved out: a day partition holding nothing but
  them is dropped (records and checkpoints); the rows of a partition still in use (other
  chains in it, the default and the pre-0008 partitions) are deleted. Dropping locks the
  tables' parents for a moment; it waits at most :data:`LOCK_TIMEOUT` for them (a long read)
  and deletes instead.

On SQLite there are no partitions: :func:`prepare` does nothing and :func:`remove` deletes.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..store.schema import audit_checkpoints, audit_records
from ..store.sql import translate_errors, write_transaction

__all__ = [
    "AHEAD",
    "chain_id",
    "opened_at",
    "bounds",
    "days_to_prepare",
    "is_partition",
    "prepare",
    "remove",
    "Removed",
]

log = logging.getLogger("keyguard.audit")

DAY = 86_400
AHEAD = 2  # days created beyond today
LOCK_TIMEOUT = "1s"
_MAX_SECOND = 0xFFFF_FFFF
_ID = re.compile(r"t([0-9a-f]{8})[0-9a-f]{7}")
_DAY_PARTITION = re.compile(r"audit_records_p(\d{8})")
_PARTITION = re.compile(r"audit_(records|checkpoints)_(legacy|default|p\d{8})")
_LOCK = 0x6B67_7061_7274  # pg_advisory_xact_lock id: one partition maintainer at a time


def chain_id(now: float) -> str:
    """A new chain's id: ``t`` + its opening second (8 hex digits, clamped to 1970..2106) + 7
    random hex digits."""
    second = min(max(int(now), 0), _MAX_SECOND)
    return f"t{second:08x}{secrets.token_hex(4)[:7]}"


def opened_at(chain: str) -> int | None:
    """The epoch second a chain id of :func:`chain_id` names; ``None`` for any other id."""
    found = _ID.fullmatch(chain)
    return None if found is None else int(found.group(1), 16)


def is_partition(table: str) -> bool:
    """Whether ``table`` is one of the audit tables' partitions (not in the schema's metadata:
    the parent stands for them)."""
    return _PARTITION.fullmatch(table) is not None


def bounds(day: int) -> tuple[str, str]:
    """The chain ids of the chains opened on ``day`` (days since the epoch): ``[low, high)``."""
    return f"t{day * DAY:08x}", f"t{min((day + 1) * DAY, _MAX_SECOND + 1):08x}"


def _suffix(day: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(day * DAY))


def days_to_prepare(now: float, existing: Iterable[str]) -> list[int]:
    """The days (since the epoch) of today and the next :data:`AHEAD` days whose record
    partition is not among ``existing`` (partition names)."""
    today = int(now) // DAY
    have = set(existing)
    return [
        d for d in range(today, today + AHEAD + 1) if f"audit_records_p{_suffix(d)}" not in have
    ]


async def _partitions(conn: AsyncConnection, parent: str) -> list[str] | None:
    """The partitions of ``parent``; ``None`` when it is not partitioned."""
    kind = (
        await conn.execute(
            text("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(:t)"), {"t": parent}
        )  # fmt: skip
    ).scalar()
    if kind != "p":
        return None
    rows = await conn.execute(
        text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
             "WHERE i.inhparent = to_regclass(:t)"), {"t": parent},
    )  # fmt: skip
    return [str(r[0]) for r in rows]


async def prepare(engine: AsyncEngine) -> list[str]:
    """Create the day partitions of today and the next :data:`AHEAD` days that are missing;
    returns those created. A day that cannot be created now (a lock not had in
    :data:`LOCK_TIMEOUT`, rows of that day in the default partition) is logged and left: its
    chains go to the default partition."""
    if engine.dialect.name != "postgresql":
        return []
    async with translate_errors("read the audit partitions"), engine.connect() as conn:
        existing = await _partitions(conn, "audit_records")
        now = float((await conn.execute(text("SELECT extract(epoch FROM now())"))).scalar_one())
    if existing is None:
        return []
    created: list[str] = []
    for day in days_to_prepare(now, existing):
        try:
            async with engine.begin() as conn:
                if await _create(conn, day):
                    created.append(_suffix(day))
        except DBAPIError as exc:
            log.warning("audit: the partition of %s was not created (%s); its chains go to "
                        "the default partition", _suffix(day), _why(exc))  # fmt: skip
    return created


async def _create(conn: AsyncConnection, day: int) -> bool:
    await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    await conn.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK})"))
    suffix = _suffix(day)
    if f"audit_records_p{suffix}" in (await _partitions(conn, "audit_records") or []):
        return False  # another writer made it meanwhile
    low, high = bounds(day)
    for parent, key in (("audit_records", ""), ("audit_checkpoints", ", PRIMARY KEY (id)")):
        name = f"{parent}_p{suffix}"
        await conn.execute(text(f"CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS{key})"))
        await conn.execute(text(
            f"ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES FROM ('{low}') TO ('{high}')"
        ))  # fmt: skip
    return True


def _why(exc: DBAPIError) -> str:
    """The server's one-line reason (no statement, no parameter: the tables' names only)."""
    lines = str(exc.orig).strip().splitlines()
    return lines[0][:200] if lines else type(exc.orig).__name__


@dataclass
class Removed:
    """What :func:`remove` did: the day partitions dropped, the chains whose rows it deleted."""

    dropped: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


async def remove(engine: AsyncEngine, chains: Sequence[str]) -> Removed:
    """Remove every record and checkpoint of ``chains`` (archived): drop the day partitions
    that hold nothing else, delete the rest."""
    done = Removed()
    if not chains:
        return done
    if engine.dialect.name != "postgresql":
        await _delete(engine, list(chains))
        done.deleted += chains
        return done
    where: dict[str, set[str]] = {}
    async with translate_errors("find audit partitions"), engine.connect() as conn:
        for chain in chains:
            found = (
                await conn.execute(
                    text(
                        "SELECT tableoid::regclass::text FROM audit_records WHERE chain = :c "
                        "LIMIT 1"
                    ),
                    {"c": chain},
                )  # fmt: skip
            ).scalar()
            where.setdefault(str(found or ""), set()).add(chain)
    for partition, members in sorted(where.items()):
        if _DAY_PARTITION.fullmatch(partition) and await _drop(engine, partition, members):
            done.dropped.append(partition)
            continue
        await _delete(engine, sorted(members))
        done.deleted += sorted(members)
    return done


async def _delete(engine: AsyncEngine, chains: list[str]) -> None:
    async with write_transaction(engine, "delete audit chains") as conn:
        await conn.execute(audit_records.delete().where(audit_records.c.chain.in_(chains)))
        await conn.execute(audit_checkpoints.delete().where(audit_checkpoints.c.chain.in_(chains)))


_OTHERS = (  # the distinct chains of a partition, one index probe each (a loose index scan)
    "WITH RECURSIVE c(chain) AS ("
    " (SELECT chain FROM {t} ORDER BY chain LIMIT 1)"
    " UNION ALL SELECT (SELECT chain FROM {t} WHERE chain > c.chain ORDER BY chain LIMIT 1)"
    " FROM c WHERE c.chain IS NOT NULL"
    ") SELECT chain FROM c WHERE chain IS NOT NULL LIMIT :n"
)


async def _only(conn: AsyncConnection, table: str, members: set[str]) -> bool:
    """Whether ``table`` holds rows of ``members`` only."""
    rows = await conn.execute(text(_OTHERS.format(t=table)), {"n": len(members) + 1})
    return {str(r[0]) for r in rows} <= members


async def _drop(engine: AsyncEngine, partition: str, members: set[str]) -> bool:
    """Drop the day partition ``partition`` of the records and its twin of the checkpoints if
    they hold rows of ``members`` only; ``False`` (nothing done) otherwise, or when the
    tables could not be locked within :data:`LOCK_TIMEOUT`."""
    twin = partition.replace("audit_records_", "audit_checkpoints_", 1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            # the parents first, in the writers' order: no insert slips in between the check
            # and the drop, and no deadlock with a writer's transaction
            await conn.execute(text(
                "LOCK TABLE ONLY audit_records, audit_checkpoints IN ACCESS EXCLUSIVE MODE"
            ))  # fmt: skip
            twins = await _partitions(conn, "audit_checkpoints") or []
            if not await _only(conn, partition, members):
                return False
            if twin in twins and not await _only(conn, twin, members):
                return False
            await conn.execute(text(f"DROP TABLE {partition}"))
            if twin in twins:
                await conn.execute(text(f"DROP TABLE {twin}"))
            else:  # its checkpoints went elsewhere (the twin was removed by hand)
                c = audit_checkpoints.c
                await conn.execute(audit_checkpoints.delete().where(c.chain.in_(sorted(members))))
    except DBAPIError as exc:
        log.warning("audit: the partition %s was not dropped (%s); its archived rows are "
                    "deleted instead", partition, _why(exc))  # fmt: skip
        return False
    return True
