"""Where the policy comes from: the file, the managed revisions in the store, both merged."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keyguard.policy.document import PolicyInvalid
from keyguard.policy.settings import PolicySettings
from keyguard.policy.source import PolicySource
from keyguard.policy.store import PolicyConflict, PolicyStore
from keyguard.store import Store

NOW = datetime(2026, 6, 1, tzinfo=UTC)
FILE = """
roles:
  chat: {operations: [chat], deployments: [gpt-4o-mini]}
bindings:
  - {name: billing, role: chat, subjects: ['app:billing']}
"""
MANAGED: dict[str, Any] = {
    "roles": {"embed": {"operations": ["embeddings"], "deployments": ["*"]}},
    "bindings": [
        {"name": "search", "role": "embed", "subjects": ["app:search"]},
        {"name": "billing", "role": "embed", "subjects": ["app:other"]},  # shadowed
    ],
}


def policy_store(store: Store) -> PolicyStore:
    return PolicyStore(store.engine)  # type: ignore[attr-defined]


def bump(path: Path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


async def test_revisions_are_compare_and_set(store: Store) -> None:
    revisions = policy_store(store)
    assert await revisions.latest_version() == 0 and await revisions.latest() is None
    first = await revisions.append(MANAGED, expected_version=0, actor="cli:alice", now=NOW)
    assert first.version == 1
    with pytest.raises(PolicyConflict) as info:
        await revisions.append({}, expected_version=0, actor="cli:bob", now=NOW)
    assert info.value.status == 409
    await revisions.append({}, expected_version=1, actor="admin-token:x", now=NOW)
    latest = await revisions.latest()
    assert latest is not None and latest.version == 2 and latest.created_by == "admin-token:x"
    assert [r.version for r in await revisions.history()] == [2, 1]
    assert (await revisions.history())[1].document == MANAGED


async def test_file_and_managed_merge_and_the_file_wins(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FILE)
    revisions = policy_store(store)
    await revisions.append(MANAGED, expected_version=0, actor="test", now=NOW)
    source = PolicySource(PolicySettings(file=str(path), managed=True), revisions)
    await source.load()
    policy = source.current
    assert [b.name for b in policy.bindings] == ["billing", "search"]
    assert policy.by_subject["app:billing"][0].role.name == "chat"
    assert source.snapshot.managed_version == 1
    assert source.snapshot.shadowed == ("managed binding billing is shadowed by the policy file",)
    assert source.generation == 1
    assert not await source.refresh()  # nothing changed


async def test_changes_are_picked_up_and_bad_ones_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FILE)
    revisions = policy_store(store)
    source = PolicySource(PolicySettings(file=str(path), managed=True), revisions)
    await source.load()
    await revisions.append(MANAGED, expected_version=0, actor="test", now=NOW)
    assert await source.refresh()
    assert "app:search" in source.current.by_subject
    bump(path, FILE.replace("gpt-4o-mini", "gpt-4o"))
    assert await source.refresh()
    assert source.current.roles["chat"].deployment_names == {"gpt-4o"}
    before = source.current
    bump(path, "roles: {broken: {operations: [nope], deployments: [x]}}\n")
    with pytest.raises(PolicyInvalid):
        await source.refresh()
    assert source.current is before  # the policy in force stays


async def test_a_bad_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("bindings: [{name: b, role: nope, subjects: ['app:x']}]\n")
    source = PolicySource(PolicySettings(file=str(path)), None)
    with pytest.raises(PolicyInvalid, match="not defined"):
        await source.load()


async def test_the_background_reload(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FILE)
    source = PolicySource(PolicySettings(file=str(path), reload_interval_s=0.01), None)
    await source.load()
    source.start()
    try:
        bump(path, "roles: [\n")
        await asyncio.wait_for(source.next_cycle(), 5)
        assert "keeping the policy in force" in caplog.text
        assert "app:billing" in source.current.by_subject
        bump(path, FILE.replace("billing", "billing2"))
        await asyncio.wait_for(source.next_cycle(), 5)
        assert "app:billing2" in source.current.by_subject
    finally:
        await source.close()


async def test_concurrent_writers_get_one_success_and_conflicts_never_a_locked_store(
    store: Store,
) -> None:
    """Ten writers at the same version: one wins, the others are told of the conflict (409);
    none gets 'database is locked' (a 503) from a read and a write that were not one step."""
    revisions = policy_store(store)
    results = await asyncio.gather(
        *(
            revisions.append(MANAGED, expected_version=0, actor=f"cli:w{i}", now=NOW)
            for i in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, PolicyConflict) for r in results if isinstance(r, BaseException))
