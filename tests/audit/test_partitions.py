"""The audit tables' day partitions on PostgreSQL (the real server): archiving a day drops its
partitions and leaves every other writer's records as they were; what the partitions cannot
hold (a day not created, a writer's clock far off) goes to the default partition and is still
archived and verified; a drop that cannot get its lock deletes instead; a partition dropped by
hand is found by verify; migration 0008 goes down and up again with the rows intact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.audit import partitions
from keyguard.audit.archive import archive_chains
from keyguard.audit.archive_verify import verify_archive
from keyguard.audit.export import verify_store
from keyguard.audit.folder import FolderDestination
from keyguard.audit.partitions import AHEAD, DAY, bounds, chain_id, days_to_prepare, opened_at
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.store import AuditStore
from keyguard.audit.verify import VerifyReport
from keyguard.audit.writer import AuditWriter
from keyguard.store.sql import MIGRATIONS, create_engine, migrate

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))


# -- pure: the ids and the bounds -----------------------------------------------------------


def test_a_chain_id_names_its_opening_second_and_sorts_by_it() -> None:
    now = 1_764_763_200.5  # 2025-12-03T12:00:00.5Z
    ids = [chain_id(now + d) for d in (-DAY, 0, 1, DAY)]
    assert all(len(i) == 16 and i.startswith("t") for i in ids)
    assert ids == sorted(ids)  # whatever their random part
    assert opened_at(ids[1]) == int(now)
    assert opened_at("0123456789abcdef") is None and opened_at("") is None  # before 0008
    assert chain_id(-5.0).startswith("t00000000") and chain_id(1e12).startswith("tffffffff")
    day = int(now) // DAY
    low, high = bounds(day)
    assert low <= ids[1] < high and not low <= ids[0] < high and not low <= ids[3] < high
    assert all(i >= "t" for i in ids)  # never in the partition of the ids before 0008
    assert days_to_prepare(now, []) == list(range(day, day + AHEAD + 1))
    assert days_to_prepare(now, ["audit_records_p20251203", "audit_records_p20251205"]) == [day + 1]


# -- on the real server -----------------------------------------------------------------------


@pytest.fixture
async def engine(postgres_database: str) -> AsyncIterator[AsyncEngine]:
    found = create_engine(postgres_database, "postgresql+asyncpg")
    await migrate(found)
    try:
        yield found
    finally:
        await found.dispose()


async def _tables(engine: AsyncEngine, parent: str) -> dict[str, int]:
    """Each partition of ``parent`` with its row count."""
    async with engine.connect() as conn:
        names = await partitions._partitions(conn, parent)
        assert names is not None
        return {
            n: int((await conn.execute(text(f"SELECT count(*) FROM {n}"))).scalar_one())
            for n in names
        }


def _day(at: float) -> str:
    return "audit_records_p" + time.strftime("%Y%m%d", time.gmtime(at))


async def _chain(audit: AuditStore, opened: float, n: int, last: float | None = None) -> str:
    """A writer's chain opened at ``opened`` with ``n`` records, the last ones at ``last``."""
    clock = [opened]
    writer = AuditWriter(audit, AuditSettings(), signer=SIGNER, clock=lambda: clock[0])
    await writer.open()
    clock[0] = opened if last is None else last
    for i in range(n):
        writer.append("request", {"i": i, "status": 200})
    await writer.close()
    return writer.id


async def _archive(audit: AuditStore, folder: Path, before: float) -> list[str]:
    folder.mkdir(exist_ok=True)
    cutoff = datetime.fromtimestamp(before, UTC)
    done = await archive_chains(audit, SIGNER, FolderDestination(folder), cutoff, datetime.now(UTC))
    return [m.chain for m in done]


async def _verified(folder: Path) -> VerifyReport:
    return await verify_archive(FolderDestination(folder), CHECK)


@pytest.mark.postgres
async def test_archiving_a_day_drops_its_partitions_and_keeps_every_other_writer(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    audit = AuditStore(engine)
    now = time.time()
    tomorrow, later = now + DAY, now + 2 * DAY
    closed = await _chain(audit, tomorrow, 5)  # alone in tomorrow's partition: dropped
    today = await _chain(audit, now, 3)  # shares today's partition with a chain still written
    live = await _chain(audit, now, 4, last=now + 3 * DAY)
    ahead = await _chain(audit, later, 2)  # its day is not archived yet
    before = await _tables(engine, "audit_records")
    assert before[_day(tomorrow)] == 7 and before[_day(now)] == 5 + 6
    assert before[_day(later)] == 4 and before["audit_records_default"] == 0

    archived = await _archive(audit, tmp_path / "a", now + 1.5 * DAY)
    assert sorted(archived) == sorted([closed, today])
    after = await _tables(engine, "audit_records")
    assert _day(tomorrow) not in after  # dropped, not emptied
    assert _day(tomorrow).replace("records", "checkpoints") not in await _tables(
        engine, "audit_checkpoints"
    )
    assert after[_day(now)] == 6 and after[_day(later)] == 4  # the others' rows, untouched
    assert set(await audit.chains()) == {live, ahead}
    report = await verify_store(audit, CHECK)
    assert report.ok and report.records == 10, report.problems
    alone = await _verified(tmp_path / "a")
    assert alone.ok and alone.records == 7 + 5, alone.problems
    # a day still ahead is made again by the next writer (empty, harmless)
    assert await audit.prepare() == [_day(tomorrow).removeprefix("audit_records_p")]


@pytest.mark.postgres
async def test_a_writer_whose_clock_is_far_off_goes_to_the_default_partition_and_verifies(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    audit = AuditStore(engine)
    now = time.time()
    past = await _chain(audit, datetime(1995, 5, 1, tzinfo=UTC).timestamp(), 3)
    future = await _chain(audit, datetime(2090, 1, 1, tzinfo=UTC).timestamp(), 4)
    normal = await _chain(audit, now, 2)
    tables = await _tables(engine, "audit_records")
    assert tables["audit_records_default"] == 5 + 6
    days = {name for name in tables if name.startswith("audit_records_p")}
    assert days == {_day(now + d * DAY) for d in range(AHEAD + 1)}  # none for 1995 or 2090
    report = await verify_store(audit, CHECK)
    assert report.ok and report.chains == 3, report.problems

    assert await _archive(audit, tmp_path / "a", now - 30 * DAY) == [past]
    assert set(await audit.chains()) == {future, normal}
    assert (await _tables(engine, "audit_records"))["audit_records_default"] == 6
    assert (await verify_store(audit, CHECK)).ok

    archived = await _archive(audit, tmp_path / "a", datetime(2091, 1, 1, tzinfo=UTC).timestamp())
    assert sorted(archived) == sorted([future, normal])
    tables = await _tables(engine, "audit_records")
    assert tables["audit_records_default"] == 0 and _day(now) not in tables
    assert (await _tables(engine, "audit_checkpoints"))["audit_checkpoints_default"] == 0
    assert await audit.chains() == {}
    assert (await verify_store(audit, CHECK)).ok
    alone = await _verified(tmp_path / "a")
    assert alone.ok and alone.chains == 3, alone.problems


@pytest.mark.postgres
async def test_a_day_not_created_in_time_goes_to_the_default_partition(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    audit = AuditStore(engine)
    now = time.time()
    tomorrow = now + DAY
    async with engine.connect() as reader:  # a long read of the default: no day can be attached
        await reader.execute(text("SELECT count(*) FROM audit_records_default"))
        stray = await _chain(audit, tomorrow, 3)  # a writer a day ahead, no partition for it
        await reader.rollback()
    tables = await _tables(engine, "audit_records")
    assert tables == {"audit_records_legacy": 0, "audit_records_default": 5}
    created = await audit.prepare()  # later: every day but the one with rows in the default
    assert _day(tomorrow).removeprefix("audit_records_p") not in created and len(created) == AHEAD
    normal = await _chain(audit, now, 1)
    tables = await _tables(engine, "audit_records")
    assert tables["audit_records_default"] == 5 and tables[_day(now)] == 3
    report = await verify_store(audit, CHECK)
    assert report.ok and report.chains == 2, report.problems

    assert sorted(await _archive(audit, tmp_path / "a", tomorrow + 60)) == sorted([stray, normal])
    tables = await _tables(engine, "audit_records")
    assert tables["audit_records_default"] == 0 and _day(now) not in tables
    assert (await verify_store(audit, CHECK)).ok
    assert (await _verified(tmp_path / "a")).ok


@pytest.mark.postgres
async def test_a_drop_that_cannot_get_its_lock_deletes_instead(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    audit = AuditStore(engine)
    now = time.time()
    closed = await _chain(audit, now + DAY, 3)
    kept = await _chain(audit, now, 2)
    async with engine.connect() as reader:  # a long read holds the parent
        await reader.execute(text("SELECT count(*) FROM audit_records"))
        archived = await _archive(audit, tmp_path / "a", now + 1.5 * DAY)
        await reader.rollback()
    assert sorted(archived) == sorted([closed, kept])
    tables = await _tables(engine, "audit_records")
    assert tables[_day(now + DAY)] == 0 and tables[_day(now)] == 0  # emptied, not dropped
    assert await audit.chains() == {}
    assert (await verify_store(audit, CHECK)).ok
    assert (await _verified(tmp_path / "a")).ok


@pytest.mark.postgres
async def test_a_partition_dropped_by_hand_is_found_by_verify(engine: AsyncEngine) -> None:
    audit = AuditStore(engine)
    now = time.time()
    dropped = await _chain(audit, now + DAY, 3)
    await _chain(audit, now, 1)  # its head set names the first chain
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP TABLE {_day(now + DAY)}"))
    report = await verify_store(audit, CHECK)
    assert f"writer {dropped}" in "\n".join(report.problems)
    assert "the whole chain was deleted" in "\n".join(report.problems)


@pytest.mark.postgres
async def test_writers_preparing_at_once_create_each_day_once(postgres_database: str) -> None:
    engines = [create_engine(postgres_database, "postgresql+asyncpg") for _ in range(3)]
    try:
        await migrate(engines[0])
        created = await asyncio.gather(*(AuditStore(e).prepare() for e in engines))
        assert sorted(sum(created, [])) == sorted(set(sum(created, [])))
        assert len(sum(created, [])) == AHEAD + 1
    finally:
        for e in engines:
            await e.dispose()


def _alembic(connection: Connection, revision: str, down: bool) -> None:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


@pytest.mark.postgres
async def test_the_migration_goes_down_and_up_again_with_every_row(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    audit = AuditStore(engine)
    now = time.time()
    await _chain(audit, now, 3)
    await _chain(audit, now + DAY, 2)
    await _chain(audit, datetime(2090, 1, 1, tzinfo=UTC).timestamp(), 1)
    before = await verify_store(audit, CHECK)
    assert before.ok and before.records == 5 + 4 + 3
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "0007", True)
    async with engine.connect() as conn:
        assert await partitions._partitions(conn, "audit_records") is None
        count = (await conn.execute(text("SELECT count(*) FROM audit_records"))).scalar()
        assert count == before.records
    assert await audit.prepare() == []  # a store before 0008: nothing to prepare
    await migrate(engine)  # the rows of 0008's chains go to the default partition
    tables = await _tables(engine, "audit_records")
    assert tables == {"audit_records_legacy": 0, "audit_records_default": before.records}
    up = await verify_store(audit, CHECK)
    assert up.ok and up.records == before.records, up.problems
