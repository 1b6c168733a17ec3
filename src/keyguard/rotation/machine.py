"""The upstream key rotation as a state machine: pure functions over values, ``now`` passed in.

Azure invalidates a regenerated key at once, so the order is what makes a rotation safe. With
key1 in service (``active``) and key2 idle (``standby``)::

    planned ──inspect──► inspected ──regenerate_standby──► regenerated ──verify──► verified
       which slot serves?          key2 := new value              a cheap call with it
    verified ──store──► stored ──switch──► switched ──drain──► drained ──retire──► retired
       new vault version      every replica       in-flight requests    key1 := new value
                              serves it            reach Azure          (a leaked copy dies)
    retired ──finish──► done                      any step can end in ``aborted``

Each step is idempotent given what is persisted after the step before: a regeneration is
recognised by the slot's fingerprint having changed (so a crash between Azure's answer and
the write of the new state never regenerates twice), a stored version by the vault's latest
value being the new key, a switch by the replicas' acknowledgements, a drain by the persisted
``switched_at``. Secrets never enter a :class:`Rotation`: only keyed fingerprints
(``Vault.fingerprint``) and version ids.

An upstream without a stored key (``managed_identity``) rotates in ``burn`` mode: both keys
are regenerated, nothing is verified, stored or switched, since nothing uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

__all__ = [
    "Slot",
    "State",
    "Action",
    "Mode",
    "Rotation",
    "TERMINAL",
    "next_action",
    "advance",
    "abort",
    "other_slot",
    "drain_remaining",
    "rotation_due",
    "lease_free",
]

Slot = Literal["key1", "key2"]
Mode = Literal["flip", "burn"]
State = Literal[
    "planned",
    "inspected",
    "regenerated",
    "verified",
    "stored",
    "switched",
    "drained",
    "retired",
    "done",
    "aborted",
]
Action = Literal[
    "inspect", "regenerate_standby", "verify", "store", "switch", "drain", "retire", "finish"
]

TERMINAL: frozenset[str] = frozenset({"done", "aborted"})

_ACTION_FROM: dict[str, Action] = {
    "planned": "inspect",
    "inspected": "regenerate_standby",
    "regenerated": "verify",
    "verified": "store",
    "stored": "switch",
    "switched": "drain",
    "drained": "retire",
    "retired": "finish",
}
_STATE_AFTER: dict[Action, State] = {
    "inspect": "inspected",
    "regenerate_standby": "regenerated",
    "verify": "verified",
    "store": "stored",
    "switch": "switched",
    "drain": "drained",
    "retire": "retired",
    "finish": "done",
}


@dataclass(frozen=True, slots=True)
class Rotation:
    """One rotation of one upstream's keys, as persisted after each step."""

    id: str
    upstream: str
    mode: Mode
    state: State
    trigger: str  # "manual", "schedule", "event:leaked_key", "resume", ...
    created_at: datetime
    updated_at: datetime
    active_slot: Slot | None = None
    standby_slot: Slot | None = None
    active_fp: str | None = None  # fingerprint of the key in service before the rotation
    standby_fp: str | None = None  # fingerprint of the standby key before its regeneration
    new_fp: str | None = None  # fingerprint of the standby key after its regeneration
    new_version: str | None = None  # the vault / Key Vault version holding the new key
    switched_at: datetime | None = None
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


def other_slot(slot: Slot) -> Slot:
    return "key2" if slot == "key1" else "key1"


def next_action(rotation: Rotation) -> Action | None:
    """The step to run next; ``None`` once the rotation is done or aborted."""
    if rotation.state in TERMINAL:
        return None
    if rotation.mode == "burn" and rotation.state == "regenerated":
        return "retire"  # nothing to verify, store, switch or drain
    return _ACTION_FROM[rotation.state]


def advance(rotation: Rotation, action: Action, now: datetime, **changes: object) -> Rotation:
    """The rotation after ``action`` succeeded, with ``changes`` recorded."""
    expected = next_action(rotation)
    if action != expected:
        raise ValueError(f"cannot {action} a rotation in state {rotation.state}")
    updated = replace(rotation, state=_STATE_AFTER[action], updated_at=now, **changes)  # type: ignore[arg-type]
    if updated.state == "done":
        updated = replace(updated, finished_at=now)
    return updated


def abort(rotation: Rotation, now: datetime, error: str) -> Rotation:
    """Stop for good; the key in service stays in service. ``error`` carries no secret."""
    if rotation.state in TERMINAL:
        return rotation
    return replace(rotation, state="aborted", error=error[:500], updated_at=now, finished_at=now)


def drain_remaining(rotation: Rotation, drain: timedelta, now: datetime) -> timedelta:
    """How much longer to let requests that took the old key reach Azure (never negative)."""
    if rotation.switched_at is None:
        return drain
    return max(timedelta(0), rotation.switched_at + drain - now)


def rotation_due(key_created_at: datetime | None, max_age: timedelta | None, now: datetime) -> bool:
    """A key stored at ``key_created_at`` is due for rotation once older than ``max_age``."""
    if max_age is None or key_created_at is None:
        return False
    return now - key_created_at >= max_age


def lease_free(owner: str | None, expires_at: datetime | None, me: str, now: datetime) -> bool:
    """A lease can be taken by ``me`` when nobody holds it, it expired, or ``me`` holds it."""
    return owner is None or owner == me or expires_at is None or expires_at <= now
