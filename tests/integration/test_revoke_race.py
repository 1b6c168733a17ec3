"""A change made on this replica is in force when the call that made it returns.

The race: a read of the store already under way (a background refresh of a cached key, or a
request waiting for one) read the key's record before a revoke; the revoke then drops the
cached record; the read lands afterwards. It must not put the old record back. Each test holds
such a read open at exactly that point (the store is wrapped: it reads the record, then waits
for the test to let it go) while the change runs, so the race happens every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest

from keyguard.admin.service import Actor, AdminService
from keyguard.config import settings_from_mapping
from keyguard.errors import AuthenticationFailed, PermissionDenied
from keyguard.identity.keys import KeyAuthenticator
from keyguard.keys.format import parse_key
from keyguard.store.base import KeyRecord
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.access import open_admin_service
from keyguard.wiring.runtime import Runtime, open_runtime

from .harness import GatewayHarness

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OPERATOR = Actor("admin-token:test", "admin")
TTL = 2.0


@dataclass
class HeldStore:
    """The store, with reads of one key that can be held open after they read."""

    inner: Any
    hold: str | None = None
    read: asyncio.Event = field(default_factory=asyncio.Event)  # a held read has read
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def get_key(self, key_id: str) -> KeyRecord | None:
        record = await self.inner.get_key(key_id)
        if key_id == self.hold:
            self.hold = None  # only the first read is held
            self.read.set()
            await self.release.wait()
        found: KeyRecord | None = record
        return found


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    rt: Runtime
    service: AdminService
    auth: KeyAuthenticator
    store: HeldStore
    clock: Clock
    key_id: str
    key: str


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    create_master_key_file(tmp_path / "master.key")
    settings = settings_from_mapping(
        {"store": f"sqlite:///{tmp_path / 'k.db'}", "master_key_file": str(tmp_path / "master.key")}
    )
    rt = await open_runtime(settings, {})
    store, clock = HeldStore(rt.store), Clock()
    auth = KeyAuthenticator(store, rt.keys, ttl=TTL, clock=clock)  # type: ignore[arg-type]
    service = await open_admin_service(rt)
    service._on_key_change = auth.invalidate  # as the gateway wires it
    record, key = await service.create_key(OPERATOR, "billing")
    try:
        yield Setup(rt, service, auth, store, clock, record.key_id, key)
    finally:
        await auth.close()
        await rt.close()


async def authenticate(s: Setup, key: str | None = None) -> str:
    parsed = parse_key(key or s.key)
    assert parsed is not None
    return (await s.auth.authenticate(parsed, datetime.now(UTC))).id


async def change(s: Setup, what: str) -> str | None:
    """Make the change through the admin service; the key that must stop working."""
    if what == "rotate":
        await s.service.rotate_key(OPERATOR, s.key_id, grace=timedelta(0))
        return s.key
    await s.service.change_key(OPERATOR, s.key_id, what)
    return s.key


@pytest.mark.parametrize("what", ["revoke", "suspend", "rotate"])
async def test_a_background_refresh_under_way_cannot_undo_the_change(
    setup: Setup, what: str
) -> None:
    s = setup
    assert await authenticate(s) == f"key:{s.key_id}"  # cached
    s.clock.now += TTL * 0.75  # past half its life: the next use refreshes in the background
    s.store.hold = s.key_id
    assert await authenticate(s) == f"key:{s.key_id}"  # served from the cache meanwhile
    await s.store.read.wait()  # the refresh has read the record as it was before the change
    stopped = await change(s, what)
    s.store.release.set()  # ... and lands after the change returned
    await asyncio.gather(*s.auth._tasks, return_exceptions=True)
    with pytest.raises(AuthenticationFailed):
        await authenticate(s, stopped)


@pytest.mark.parametrize("what", ["revoke", "suspend", "rotate"])
async def test_a_request_waiting_for_a_read_under_way_sees_the_change(
    setup: Setup, what: str
) -> None:
    s = setup
    s.store.hold = s.key_id
    waiting = asyncio.ensure_future(authenticate(s))  # nothing cached: it waits for the read
    await s.store.read.wait()
    stopped = await change(s, what)
    s.store.release.set()
    with pytest.raises(AuthenticationFailed):
        await waiting
    with pytest.raises(AuthenticationFailed):
        await authenticate(s, stopped)


async def test_resume_is_in_force_when_it_returns(setup: Setup) -> None:
    s = setup
    await s.service.change_key(OPERATOR, s.key_id, "suspend")
    with pytest.raises(AuthenticationFailed):
        await authenticate(s)  # the suspended record is cached
    s.clock.now += TTL * 0.75
    s.store.hold = s.key_id
    with pytest.raises(AuthenticationFailed):
        await authenticate(s)  # starts a background refresh that reads "suspended"
    await s.store.read.wait()
    await s.service.change_key(OPERATOR, s.key_id, "resume")
    s.store.release.set()
    await asyncio.gather(*s.auth._tasks, return_exceptions=True)
    assert await authenticate(s) == f"key:{s.key_id}"


async def test_reads_overtaken_again_and_again_answer_503_not_a_stale_record(
    setup: Setup,
) -> None:
    s = setup

    class Invalidating:
        async def get_key(self, key_id: str) -> KeyRecord | None:
            record = await s.rt.store.get_key(key_id)
            s.auth.invalidate(key_id)  # a change lands during every read
            return record

    s.auth._store = Invalidating()  # type: ignore[assignment]
    with pytest.raises(Exception) as info:
        await authenticate(s)
    assert getattr(info.value, "status", None) == 503


POLICY: dict[str, Any] = {
    "roles": {"chat": {"operations": ["chat"], "deployments": ["gpt-4o"]}},
    "bindings": [{"name": "billing-chat", "role": "chat", "subjects": ["app:billing"]}],
}


async def test_a_removed_binding_is_in_force_when_the_call_returns(tmp_path: Path) -> None:
    """The policy's background reload, held open after reading the old revision, cannot
    put the removed binding back: the admin call reloads under the same lock."""
    from keyguard.core.principal import Principal
    from keyguard.core.request import RequestContext
    from keyguard.policy.authorizer import PolicyAuthorizer
    from keyguard.proxy.routes import parse_route

    create_master_key_file(tmp_path / "master.key")
    settings = settings_from_mapping(
        {
            "store": f"sqlite:///{tmp_path / 'k.db'}",
            "master_key_file": str(tmp_path / "master.key"),
            "access": {"policy": {"managed": True, "reload_interval_s": 3600}},
        }
    )
    rt = await open_runtime(settings, {})
    try:
        service = await open_admin_service(rt)
        source = service._policy
        assert source is not None and source.store is not None
        await service.replace_managed_policy(OPERATOR, POLICY, expected_version=0)
        authorizer = PolicyAuthorizer(lambda: source.current)

        def ctx() -> RequestContext:
            c = RequestContext("r", 0.0, "POST", "127.0.0.1", None)
            c.route = parse_route(
                "POST", "/openai/deployments/gpt-4o/chat/completions", "api-version=2024-10-21"
            )
            c.principal = Principal("key", "key:K", "billing", "K")
            c.deployment = "gpt-4o"
            return c

        authorizer.authorize(ctx(), NOW)  # allowed
        revisions = source.store
        read, release = asyncio.Event(), asyncio.Event()
        real_latest = revisions.latest

        async def held_latest() -> Any:
            revision = await real_latest()
            if not read.is_set():
                read.set()
                await release.wait()
            return revision

        revisions.latest = held_latest  # type: ignore[method-assign]
        source._snapshot = source._snapshot.__class__(
            source.snapshot.file, source.snapshot.managed, 0, ()
        )  # the background reload will see a "new" revision and read it
        reload = asyncio.ensure_future(source.refresh())
        await read.wait()  # it has read the revision that still has the binding
        removal = asyncio.ensure_future(service.delete_binding(OPERATOR, "billing-chat"))
        release.set()
        await reload
        await removal  # returned: the removal must be in force
        with pytest.raises(PermissionDenied):
            authorizer.authorize(ctx(), NOW)
    finally:
        await rt.close()


async def test_no_request_is_served_with_a_revoked_key_after_the_revoke_returns(
    gateway: GatewayHarness,
) -> None:
    """End to end through the official SDK, on the gateway's own wiring."""
    gw = gateway.gateway
    assert gw.authenticator is not None and gw.access is not None
    auth = gw.authenticator
    held, clock = HeldStore(auth._store), Clock()
    auth._store, auth._clock = held, clock  # type: ignore[assignment]
    key_id, key = await gateway.new_key(app="billing")
    client = gateway.azure(key)
    messages: Any = [{"role": "user", "content": "hi"}]
    try:
        await client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=1)
        clock.now += auth.ttl * 0.75
        held.hold = key_id
        await client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=1)
        await held.read.wait()  # a background refresh read the active record and is held
        await gw.access.api.service.change_key(OPERATOR, key_id, "revoke")  # the API's call
        held.release.set()
        await asyncio.gather(*auth._tasks, return_exceptions=True)
        for _ in range(3):
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(
                    model="gpt-4o", messages=messages, max_tokens=1
                )
    finally:
        await client.close()
