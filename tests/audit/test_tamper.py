"""A hostile store writer against the audit log, on SQLite and PostgreSQL.

Each tampering is done on a log a real gateway wrote and closed, with SQL alone (no signing
key). ``keyguard audit verify`` must exit 1 naming what is wrong; where the tampering is at the
end of the log, the next gateway start must also find it: a critical ``audit_tampered``
security event, a new segment that links to the last record a valid checkpoint seals, and no
signature over the forged records.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from keyguard.audit.chain import Record, canonical, link
from keyguard.emulator.server import RunningEmulator

from .tampering import ATTACKER, AuditedGateway, forged_after

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


async def reorder(g: AuditedGateway) -> None:
    recs = await g.records()
    await g.rewrite(replace(recs[3], seq=3))
    await g.rewrite(replace(recs[2], seq=4))


async def insert(g: AuditedGateway) -> None:
    recs = await g.records()
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
    await g.put(forged_after((await g.records())[-1]))


async def _recompute(g: AuditedGateway) -> list[Record]:
    """Edit record 3 and recompute every hash after it, as the chain's rules say."""
    recs = await g.records()
    recs[2] = replace(recs[2], data=canonical({"action": "nothing"}))
    prev = recs[1].hash
    for i in range(2, len(recs)):
        r = replace(recs[i], prev_hash=prev)
        recs[i] = r = replace(r, hash=link(r.seq, r.created, r.kind, r.prev_hash, r.data))
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
    forged = ATTACKER.sign(recs[-1].seq, recs[-1].hash, recs[-1].created)
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
        ["seals a record past the end of the log (seq 4): records 5..7 were deleted"],
        "seals a record past the end of the log (seq 4)",
    ),
    "truncate_with_checkpoints": (
        truncate_with_checkpoints,
        ["anchors.jsonl:1) at seq 7", "record 7 was deleted together with its checkpoints"],
        "the anchor holds a checkpoint at seq 7",
    ),
    "append": (
        append,
        ["record 8 is not sealed by any checkpoint: appended by someone without the signing key"],
        "record 8 is not sealed (the last signed checkpoint is at seq 7)",
    ),
    "edit_last": (
        edit_last,
        ["record 7: its content does not match its hash (edited)"],
        "record 7 does not match its checkpoint",
    ),
    "rewrite_unsigned": (
        rewrite_unsigned,
        ["records 1..7 are not sealed by any checkpoint", "anchors.jsonl:1) at seq 7"],
        "records 1..7 are not sealed (the last signed checkpoint is at seq 0)",
    ),
    "rewrite_resigned": (
        rewrite_resigned,
        ["checkpoint at seq 7", "its signature is not valid for a known public key"],
        "its signature is not valid (forged or edited)",
    ),
}


async def test_an_untouched_log_verifies_with_its_anchor(log: AuditedGateway) -> None:
    result = await log.verify()
    assert result.exit_code == 0, result.output
    assert "ok: the chain is intact; sealed up to seq 7" in result.output
    assert "anchors: 1 anchored checkpoints" in result.output and "note:" not in result.output


@pytest.mark.parametrize("case", list(CASES))
async def test_verify_names_each_tampering(log: AuditedGateway, case: str) -> None:
    tamper, says, _ = CASES[case]
    await tamper(log)
    result = await log.verify()
    assert result.exit_code == 1, result.output
    assert "the audit log does NOT verify" in result.output
    for fragment in says:
        assert fragment in result.output, result.output


async def test_truncation_with_its_checkpoints_needs_the_anchor(log: AuditedGateway) -> None:
    await truncate_with_checkpoints(log)
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
    await tamper(log)
    before, sealed = await log.records(), await log.checkpoints()
    await log.run(2, tag="b")  # a new gateway start, two actions, a clean stop
    after = await log.records()
    new_checkpoints = (await log.checkpoints())[len(sealed) :]
    [opened] = [r for r in after[len(before) :] if r.kind == "segment"][:1]
    found = orjson.loads(opened.data)
    assert any(finding in f for f in found["found"]), found
    link_to = found["after"]["seq"]
    untrusted = {r.hash for r in before if r.seq > link_to}  # what it did not write
    assert opened.prev_hash == found["after"]["hash"] and opened.seq == before[-1].seq + 1
    assert opened.prev_hash not in untrusted
    assert new_checkpoints and not untrusted & {cp.hash for cp in new_checkpoints}  # not sealed
    assert not untrusted & {r.prev_hash for r in after[len(before) :]}  # never linked to
    [event] = await log.security_events("audit_tampered")
    assert event["severity"] == "critical" and "A new segment starts" in event["summary"]
    assert any(finding in f for f in event["evidence"]["findings"])
    result = await log.verify()
    assert result.exit_code == 1 and "the writer that started here found" in result.output


async def test_a_running_gateway_never_links_to_an_appended_record(log: AuditedGateway) -> None:
    async with log.running() as gw:
        await log.write(gw, 2, tag="b")
        forged = forged_after((await log.records())[-1])
        await log.put(forged)
        await log.write(gw, 2, tag="c")  # the next batch finds the head moved
        assert gw.monitoring is not None and gw.monitoring.recorder.audit is not None
        assert gw.monitoring.recorder.audit.findings == 1
        await gw.monitoring.recorder.drain()  # the security event is written too
    recs = await log.records()
    assert forged.hash not in {r.prev_hash for r in recs}
    assert forged.hash not in {cp.hash for cp in await log.checkpoints()}
    [event] = await log.security_events("audit_tampered")
    assert f"record {forged.seq} is not sealed" in event["summary"]
    result = await log.verify()
    assert result.exit_code == 1
    assert f"record {forged.seq} is not sealed by any checkpoint, left out by the writer" in (
        result.output
    )


async def test_a_running_gateway_sees_its_own_records_cut(log: AuditedGateway) -> None:
    async with log.running() as gw:
        await log.write(gw, 3, tag="b")
        last = (await log.records())[-1].seq
        await log.sql("DELETE FROM audit_records WHERE seq > :s", s=last - 2)
        await log.sql("DELETE FROM audit_checkpoints WHERE seq > :s", s=last - 2)
        await log.write(gw, 1, tag="c")
    [event] = await log.security_events("audit_tampered")
    gone = f"records up to seq {last} written by this writer are gone"
    assert any(gone in f for f in event["evidence"]["findings"]), event
    assert (await log.verify()).exit_code == 1
