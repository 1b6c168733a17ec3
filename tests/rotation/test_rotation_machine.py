"""The rotation state machine and schedule decisions: pure functions, ``now`` passed in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from keyguard.rotation.machine import (
    Rotation,
    abort,
    advance,
    drain_remaining,
    lease_free,
    next_action,
    other_slot,
    rotation_due,
)
from keyguard.rotation.replicas import replica_ttl, switch_status
from keyguard.rotation.store import ReplicaAck

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _rotation(mode: str = "flip") -> Rotation:
    return Rotation(
        id="r1",
        upstream="east",
        mode=mode,  # type: ignore[arg-type]
        state="planned",
        trigger="manual",
        created_at=T0,
        updated_at=T0,
    )


def test_flip_runs_every_step_in_the_safe_order() -> None:
    r = _rotation()
    actions = []
    now = T0
    while (action := next_action(r)) is not None:
        actions.append(action)
        now += timedelta(seconds=1)
        r = advance(r, action, now)
    assert actions == [
        "inspect",
        "regenerate_standby",
        "verify",
        "store",
        "switch",
        "drain",
        "retire",
        "finish",
    ]
    assert r.state == "done" and r.finished_at == now and r.finished


def test_burn_mode_skips_what_needs_a_stored_key() -> None:
    r = _rotation("burn")
    actions = []
    while (action := next_action(r)) is not None:
        actions.append(action)
        r = advance(r, action, T0)
    assert actions == ["inspect", "regenerate_standby", "retire", "finish"]


def test_advance_refuses_a_step_out_of_order_and_records_changes() -> None:
    r = _rotation()
    with pytest.raises(ValueError, match="cannot retire"):
        advance(r, "retire", T0)
    r = advance(r, "inspect", T0, active_slot="key2", standby_slot="key1", active_fp="a")
    assert (r.state, r.active_slot, r.standby_slot, r.active_fp) == (
        "inspected",
        "key2",
        "key1",
        "a",
    )


def test_abort_is_final_and_keeps_its_reason_short() -> None:
    r = abort(_rotation(), T0, "x" * 900)
    assert r.state == "aborted" and next_action(r) is None and len(r.error or "") == 500
    assert abort(r, T0 + timedelta(1), "again") is r


def test_drain_counts_from_the_persisted_switch() -> None:
    r = _rotation()
    assert drain_remaining(r, timedelta(seconds=10), T0) == timedelta(seconds=10)
    switched = replace(r, switched_at=T0)
    assert drain_remaining(switched, timedelta(seconds=10), T0 + timedelta(seconds=4)) == (
        timedelta(seconds=6)
    )
    assert drain_remaining(switched, timedelta(seconds=10), T0 + timedelta(hours=1)) == (
        timedelta(0)
    )


def test_schedule_and_lease_decisions() -> None:
    age = timedelta(days=30)
    assert not rotation_due(None, age, T0)
    assert not rotation_due(T0, None, T0 + timedelta(days=400))
    assert not rotation_due(T0, age, T0 + age - timedelta(seconds=1))
    assert rotation_due(T0, age, T0 + age)
    assert lease_free(None, None, "me", T0)
    assert lease_free("me", T0 + age, "me", T0)
    assert not lease_free("other", T0 + timedelta(seconds=1), "me", T0)
    assert lease_free("other", T0, "me", T0)
    assert other_slot("key1") == "key2" and other_slot("key2") == "key1"


def test_switch_waits_for_every_live_replica_only() -> None:
    ttl = replica_ttl(1.0)
    assert ttl == timedelta(seconds=30)

    def ack(replica: str, version: str | None, seen: int, switched: int = 0) -> ReplicaAck:
        return ReplicaAck(
            replica,
            "east",
            version,
            T0 + timedelta(seconds=switched),
            T0 + timedelta(seconds=seen),
        )

    now = T0 + timedelta(seconds=100)
    acks = [ack("a", "7", 99, 95), ack("b", "6", 98), ack("dead", "6", 10)]
    status = switch_status(acks, "7", now, ttl)
    assert not status.done and status.waiting == ("b",)
    acks[1] = ack("b", "7", 99, 97)
    status = switch_status(acks, "7", now, ttl)
    assert status.done and status.last_switch == T0 + timedelta(seconds=97)
    assert switch_status([], "7", now, ttl).done
