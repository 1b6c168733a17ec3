"""A hostile store writer against the audit log, on SQLite and PostgreSQL.

Each tampering is done on a log a real gateway wrote and closed, with SQL alone (no signing
key). ``keyguard audit verify`` must exit 1 naming what is wrong; where the tampering cuts or
rewrites the end of a writer's chain, the next gateway start must also find it (the newest head
set names that end): a critical ``audit_tampered`` security event, a chain of its own whose
open record says what it found, and no signature over the forged records. Across writers:
records replayed into another writer's chain, a writer's chain deleted whole, a forged head set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from keyguard.audit.chain import Position, Record, canonical, link
from keyguard.audit.heads import sign_heads
from keyguard.audit.rows import parse_iso
from keyguard.emulator.server import RunningEmulator

from .tampering import ATTACKER, AuditedGateway, _stored, forged_after

Tamper = Callable[[AuditedGateway], Awaitable[None]]


@pytest.fixture
async def log(tmp_path: Path, emulator: RunningEmulator, store_url: str) -> AuditedGateway:
    """A closed log: 1 open, 2..6 admin actions, 7 close; the anchor holds the last checkpoint."""
    gateway = AuditedGateway(tmp_path, emulator, store_url, anchor=tmp_path / "anchors.jsonl")
    await gateway.prepare()
    await gateway.run(5)
    return gateway


async def edit(g: AuditedGateway) -> None:
    await g.sql("UPDATE audit_records SET data = :d WHERE seq = 3", d='{"action":"nothing"}')


async def edit_last(g: AuditedGateway) -> None:
    await g.sql("UPDATE audit_records SET data = :d WHERE seq = 7", d='{"event":"nothing"}')


async def delete(g: AuditedGateway) -> None:
    await g.sql("DELETE FROM audit_records WHERE seq = 3")


async def _records(g: AuditedGateway) -> list[Record]:
    """The records of the one chain the fixture's gateway wrote."""
    [chain] = await g.chains()
    return await g.records(chain)


async def reorder(g: AuditedGateway) -> None:
    recs = await _records(g)
    await g.rewrite(replace(recs[3], seq=3))
    await g.rewrite(replace(recs[2], seq=4))


async def insert(g: AuditedGateway) -> None:
    recs = await _records(g)
    await g.sql("UPDATE audit_records SET seq = seq + 1000 WHERE seq > 3")
    await g.sql("UPDATE audit_records SET seq = seq - 999 WHERE seq > 1000")
    await g.put(forged_after(recs[2]))  # seq 4, linked to 3; the old 4..7 are now 5..8


async def truncate(g: AuditedGateway) -> None:
    await g.sql("DELETE FROM audit_records WHERE seq > 4")


async def truncate_with_checkpoints(g: AuditedGateway) -> None:
    """Cut where a checkpoint seals (after the batch 2..6): what is left verifies by itself."""
    await g.sql("DELETE FROM audit_records WHERE seq > 6")
    await g.sql("DELETE FROM audit_checkpoints WHERE seq > 6")


async def append(g: AuditedGateway) -> None:
    await g.put(forged_after((await _records(g))[-1]))


async def _recompute(g: AuditedGateway) -> list[Record]:
    """Edit record 3 and recompute every hash after it, as the chain's rules say."""
    recs = await _records(g)
    recs[2] = replace(recs[2], data=canonical({"action": "nothing"}))
    prev = recs[1].hash
    for i in range(2, len(recs)):
        r = replace(recs[i], prev_hash=prev)
        digest = link(r.seq, r.created, r.kind, r.prev_hash, r.data, r.chain)
        recs[i] = r = replace(r, hash=digest)
        await g.rewrite(r)
        prev = r.hash
    await g.sql("DELETE FROM audit_checkpoints")
    return recs


async def rewrite_unsigned(g: AuditedGateway) -> None:
    await _recompute(g)


async def rewrite_resigned(g: AuditedGateway) -> None:
    """... and sign the new head with a key of their own, under the real key's id."""
    real = (await g.checkpoints())[0].key_id
    recs = await _recompute(g)
    forged = ATTACKER.sign(recs[-1].seq, recs[-1].hash, recs[-1].created, recs[-1].chain)
    await g.add_checkpoint(replace(forged, key_id=real))


CASES: dict[str, tuple[Tamper, list[str], str | None]] = {
    # name: (tampering, what verify says, what the next start finds (None: nothing at the end))
    "edit": (edit, ["record 3: its content does not match its hash (edited)"], None),
    "delete": (delete, ["record 3: missing (deleted; the next one present is 4)"], None),
    "reorder": (
        reorder,
        ["record 3: its content does not match its hash", "record 3: does not follow record 2"],
        None,
    ),
    "insert": (
        insert,
        ["record 5: its content does not match its hash", "record 5: does not follow record 4"],
        None,
    ),
    "truncate": (
        truncate,
        ["seals a record past the end of the chain (seq 4): records 5..7 were deleted"],
        "but its chain ends at seq 4: its newest records were deleted",
    ),
    "truncate_with_checkpoints": (
        truncate_with_checkpoints,
        ["anchors.jsonl:1) at seq 7", "record 7 was deleted together with its checkpoints"],
        "but its chain ends at seq 6: its newest records were deleted",
    ),
    "append": (
        append,
        ["record 8 is not sealed by any checkpoint: appended by someone without the signing key"],
        None,  # the head sets name seq 7, which is intact; verify names record 8
    ),
    "edit_last": (
        edit_last,
        ["record 7: its content does not match its hash (edited)"],
        "records up to seq 7 were rewritten",
    ),
    "rewrite_unsigned": (
        rewrite_unsigned,
        ["records 1..7 are not sealed by any checkpoint", "anchors.jsonl:1) at seq 7"],
        "records up to seq 7 were rewritten",
    ),
    "rewrite_resigned": (
        rewrite_resigned,
        ["checkpoint at seq 7", "its signature is not valid for a known public key"],
        "records up to seq 7 were rewritten",
    ),
}


async def test_an_untouched_log_verifies_with_its_anchor(log: AuditedGateway) -> None:
    result = await log.verify()
    assert result.exit_code == 0, result.output
    assert "ok: every chain is intact" in result.output
    assert "7 records in 1 writers' chains" in result.output and "1 head sets" in result.output
    assert "anchors: 2 anchored lines" in result.output and "note:" not in result.output


@pytest.mark.parametrize("case", list(CASES))
async def test_verify_names_each_tampering(log: AuditedGateway, case: str) -> None:
    tamper, says, _ = CASES[case]
    await tamper(log)
    result = await log.verify()
    assert result.exit_code == 1, result.output
    assert "the audit log does NOT verify" in result.output
    for fragment in says:
        assert fragment in result.output, result.output


async def test_truncation_with_its_checkpoints_and_head_sets_needs_the_anchor(
    log: AuditedGateway,
) -> None:
    await truncate_with_checkpoints(log)
    await log.sql("DELETE FROM audit_heads")
    explicit = await log.verify("--anchors", str(log.anchor))
    assert explicit.exit_code == 1 and "together with its checkpoints" in explicit.output
    empty = log.tmp / "empty.jsonl"
    empty.write_text("")
    blind = await log.verify("--anchors", str(empty))  # the limit: the store alone cannot tell
    assert blind.exit_code == 0, blind.output


@pytest.mark.parametrize("case", [name for name, (_, _, found) in CASES.items() if found])
async def test_the_next_start_finds_tampering_at_the_end(log: AuditedGateway, case: str) -> None:
    tamper, _, finding = CASES[case]
    assert finding is not None
    [old] = await log.chains()
    await tamper(log)
    before = await log.records(old)
    await log.run(2, tag="b")  # a new gateway start, two actions, a clean stop
    [new] = [c for c in await log.chains() if c != old]
    assert await log.records(old) == before  # the old chain is left as it is
    mine = await log.records(new)
    opened = mine[0]
    found = orjson.loads(opened.data)
    assert opened.kind == "segment" and found["event"] == "open"
    assert any(finding in f for f in found["found"]), found
    assert opened.prev_hash == "0" * 64  # a chain of its own: it links to nothing it found
    untrusted = {r.hash for r in before}
    assert not untrusted & {r.prev_hash for r in mine}
    assert not untrusted & {cp.hash for cp in await log.checkpoints(new)}
    [event] = await log.security_events("audit_tampered")
    assert event["severity"] == "critical"
    assert any(finding in f for f in event["evidence"]["findings"])
    result = await log.verify()
    assert result.exit_code == 1 and "the writer that started here found" in result.output


async def test_a_running_gateway_never_links_to_an_appended_record(log: AuditedGateway) -> None:
    async with log.running() as gw:
        assert gw.monitoring is not None and gw.monitoring.recorder.audit is not None
        audit = gw.monitoring.recorder.audit
        await log.write(gw, 2, tag="b")
        first = audit.id
        forged = forged_after((await log.records(first))[-1])
        await log.put(forged)
        await log.write(gw, 2, tag="c")  # the next batch finds its chain's head moved
        assert audit.findings == 1 and audit.id != first  # it goes on in a new chain
        await gw.monitoring.recorder.drain()  # the security event is written too
    recs = await log.records()
    assert forged.hash not in {r.prev_hash for r in recs}
    assert forged.hash not in {cp.hash for cp in await log.checkpoints()}
    [event] = await log.security_events("audit_tampered")
    assert (
        f"holds records up to seq {forged.seq} that this writer did not write" in (event["summary"])
    )
    result = await log.verify()
    assert result.exit_code == 1
    assert f"writer {first}: record {forged.seq} is not sealed by any checkpoint" in result.output


async def test_a_running_gateway_sees_its_own_records_cut(log: AuditedGateway) -> None:
    async with log.running() as gw:
        assert gw.monitoring is not None and gw.monitoring.recorder.audit is not None
        chain = gw.monitoring.recorder.audit.id
        await log.write(gw, 3, tag="b")
        last = (await log.records(chain))[-1].seq
        params = {"c": chain, "s": last - 2}
        await log.sql("DELETE FROM audit_records WHERE chain = :c AND seq > :s", **params)
        await log.sql("DELETE FROM audit_checkpoints WHERE chain = :c AND seq > :s", **params)
        await log.write(gw, 1, tag="c")
    [event] = await log.security_events("audit_tampered")
    gone = f"(written up to seq {last}) ends at seq {last - 2}: its records after that"
    assert any(gone in f for f in event["evidence"]["findings"]), event
    assert (await log.verify()).exit_code == 1


async def test_records_replayed_into_another_writers_chain_do_not_verify(
    log: AuditedGateway,
) -> None:
    [first] = await log.chains()
    await log.run(2, tag="b")  # a second writer, its own chain
    [second] = [c for c in await log.chains() if c != first]
    theirs = await log.records(first)
    mine = await log.records(second)
    # copy the first writer's records 2..3 over the second's 2..3, links and hashes as they were
    for rec in theirs[1:3]:
        await log.rewrite(replace(rec, chain=second))
    result = await log.verify()
    assert result.exit_code == 1
    assert f"writer {second}: record 2: its content does not match its hash" in result.output
    # and moving a record to another chain (same seq) is an edit as well
    await log.sql("UPDATE audit_records SET chain = :c WHERE chain = :f AND seq = 4",
                  c="evil0000evil0000", f=first)  # fmt: skip
    result = await log.verify()
    assert "writer evil0000evil0000: record 4: its content does not match" in result.output
    assert f"writer {first}: record 4: missing" in result.output
    assert len(mine) == 4


async def test_a_writer_deleted_whole_shows_in_the_head_sets(log: AuditedGateway) -> None:
    [first] = await log.chains()
    await log.run(1, tag="b")
    await log.sql("DELETE FROM audit_records WHERE chain = :c", c=first)
    await log.sql("DELETE FROM audit_checkpoints WHERE chain = :c", c=first)
    result = await log.verify()
    assert result.exit_code == 1
    assert f"writer {first}: a head set or an anchor names its chain up to seq 7" in result.output
    assert "the whole chain was deleted" in result.output


async def test_a_forged_head_set_is_named(log: AuditedGateway) -> None:
    [chain] = await log.chains()
    real = (await log.checkpoints(chain))[0].key_id
    recs = await log.records(chain)
    forged = sign_heads(ATTACKER, recs[-1].created, "evil", [(chain, Position(3, recs[2].hash))])
    await log.sql(
        "INSERT INTO audit_heads (created_at, writer, heads, key_id, signature) "
        "VALUES (:at, 'evil', :heads, :key_id, :signature)",
        at=_stored(parse_iso(forged.created), log.store_url),
        heads=forged.payload().decode().replace(forged.key_id, real),
        key_id=real,
        signature=forged.signature,
    )
    result = await log.verify()
    assert result.exit_code == 1
    assert "its signature is not valid for a known public key" in result.output
    assert "head set of" in result.output
