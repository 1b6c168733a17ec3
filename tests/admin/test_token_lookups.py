"""Admin tokens on the admin port: a made-up id costs what a wrong secret costs, and a flood
of made-up ids cannot reach the store (an index of the token ids and a lookup budget, as for
Keyguard keys). Counted, not timed: bench/identity/oracle.py --port admin measures the time.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import event

from keyguard.admin.tokens import AdminTokenRecord, AdminTokenService, AdminTokenStore
from keyguard.bus import Message, Receiver, sign
from keyguard.cli.support import cli_actor
from keyguard.emulator import RunningEmulator
from keyguard.identity.key_index import IdIndex
from keyguard.keys.admin_tokens import TOKEN_PREFIX, _checksum, generate_token
from keyguard.server import Gateway
from keyguard.store import Store
from keyguard.wiring.access import open_admin_service
from keyguard.wiring.bus import admin_tokens_from_bus
from tests.support.gateway import running_gateway, runtime

NOW = datetime(2026, 6, 1, tzinfo=UTC)


# -- end to end, on the admin port ---------------------------------------------------------


@pytest.fixture
async def gateway(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[Gateway]:
    proxy = {"key_cache_ttl_s": 60, "unknown_key_lookups_per_s": 1, "access_log": False}
    async with running_gateway(tmp_path, emulator, proxy=proxy) as gw:
        yield gw


@pytest.fixture
def lookups(gateway: Gateway) -> Iterator[list[str]]:
    """The store reads of one admin token record (by id) from now on."""
    engine = runtime(gateway).engine
    assert engine is not None
    seen: list[str] = []

    def executed(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM admin_tokens" in statement and "admin_tokens.token_id =" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", executed)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", executed)


async def new_token(gateway: Gateway) -> tuple[str, str]:
    """An admin token made by the CLI (not through this gateway, which learns of it later)."""
    service = await open_admin_service(runtime(gateway))
    record, token = await service.create_admin_token(cli_actor(), name="ops", role="viewer")
    return record.token_id, token


async def status(http: aiohttp.ClientSession, gateway: Gateway, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(gateway.admin_url + "/admin/keys", headers=headers) as resp:
        await resp.read()
        return resp.status


def wrong_secret(token_id: str) -> str:
    """A well-formed token (checksum right) with a real id and a secret that is not its own."""
    secret = generate_token()[1][4 + len(token_id) : -6]
    body = TOKEN_PREFIX + token_id + secret
    return body + _checksum(body)


async def test_a_flood_of_made_up_ids_stays_within_the_lookup_budget(
    gateway: Gateway, lookups: list[str]
) -> None:
    _, real = await new_token(gateway)
    async with aiohttp.ClientSession() as http:
        assert await status(http, gateway, real) == 200  # found within the budget, then kept
        lookups.clear()
        for _ in range(200):
            assert await status(http, gateway, generate_token()[1]) == 401
        # the burst (2) and what the bucket refilled meanwhile (1 a second), not 200
        assert len(lookups) <= 40, len(lookups)
        assert await status(http, gateway, real) == 200  # a real token is never held back


async def test_an_unknown_id_and_a_wrong_secret_cost_the_same_and_no_store_read(
    gateway: Gateway, lookups: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token_id, real = await new_token(gateway)
    unknown, wrong = generate_token()[1], wrong_secret(token_id)
    compared: list[tuple[int, int]] = []
    original = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        compared.append((len(a), len(b)))
        return original(a, b)

    async with aiohttp.ClientSession() as http:
        for token in (real, unknown, wrong):  # first use: read once each
            await status(http, gateway, token)
        lookups.clear()
        work: dict[str, Counter[tuple[int, int]]] = {}
        for name, token in (("unknown id", unknown), ("wrong secret", wrong)):
            compared.clear()
            monkeypatch.setattr(hmac, "compare_digest", counting)
            for _ in range(20):
                assert await status(http, gateway, token) == 401
            monkeypatch.setattr(hmac, "compare_digest", original)
            work[name] = Counter(compared)
        assert lookups == []  # neither reads the store again, nor builds a record from a row
        # the same comparisons (the checksum's, one of a 64-character digest) in either case
        assert work["unknown id"] == work["wrong secret"], work
        assert work["unknown id"][(64, 64)] == 20, work
        assert await status(http, gateway, real) == 200 and lookups == []


async def test_a_revocation_is_in_force_when_the_call_returns(gateway: Gateway) -> None:
    token_id, token = await new_token(gateway)
    _, admin = await new_admin(gateway)
    async with aiohttp.ClientSession() as http:
        assert await status(http, gateway, token) == 200  # cached for a minute now
        async with http.post(
            f"{gateway.admin_url}/admin/tokens/{token_id}/revoke",
            headers={"Authorization": f"Bearer {admin}"},
        ) as resp:
            assert resp.status == 200, await resp.text()
        assert await status(http, gateway, token) == 401


async def new_admin(gateway: Gateway) -> tuple[str, str]:
    service = await open_admin_service(runtime(gateway))
    record, token = await service.create_admin_token(cli_actor(), name="root", role="admin")
    return record.token_id, token


# -- the service: a read overtaken by a revocation, another replica's revocation ------------


class Held:
    """The store, whose next read of a record waits until released."""

    def __init__(self, inner: AdminTokenStore) -> None:
        self.inner = inner
        self.reading = asyncio.Event()
        self.release = asyncio.Event()
        self.hold = False

    async def get(self, token_id: str) -> AdminTokenRecord | None:
        record = await self.inner.get(token_id)
        if self.hold:
            self.hold = False
            self.reading.set()
            await self.release.wait()
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def cached_service(store: Store, **kw: Any) -> tuple[AdminTokenService, Held]:
    held = Held(AdminTokenStore(store.engine))  # type: ignore[attr-defined]
    return AdminTokenService(held, b"p" * 32, ttl=60.0, **kw), held  # type: ignore[arg-type]


async def test_a_read_under_way_during_a_revocation_cannot_bring_the_token_back(
    store: Store,
) -> None:
    tokens, held = cached_service(store)
    record, token = await tokens.create(name="a", role="admin", created_by="t", now=NOW)
    held.hold = True
    verifying = asyncio.create_task(tokens.verify(token, NOW))
    await held.reading.wait()  # it read the active record and is held before caching it
    await tokens.revoke(record.token_id, now=NOW)
    held.release.set()
    assert await verifying is None  # read again: revoked
    assert await tokens.verify(token, NOW) is None  # and nothing stale was kept


async def test_a_revocation_on_another_replica_drops_the_cached_record(store: Store) -> None:
    key, published = b"k" * 32, list[str]()

    class Bus:
        def __init__(self) -> None:
            self.receiver = Receiver(key, "here", clock=NOW.timestamp)

        def subscribe(self, topic: str, handler: Any) -> None:
            self.receiver.subscribe(topic, handler)

    here, _ = cached_service(store)
    there, _ = cached_service(store, on_revoke=published.append)
    bus = Bus()
    admin_tokens_from_bus(here, bus)  # type: ignore[arg-type]
    record, token = await there.create(name="a", role="admin", created_by="t", now=NOW)
    assert await here.verify(token, NOW) == record  # cached here for a minute
    await there.revoke(record.token_id, now=NOW)
    assert published == [record.token_id]
    assert await here.verify(token, NOW) == record  # not told yet: the cache's bound
    message = Message("admin-token", "there", {"id": record.token_id}, NOW.timestamp(), "n" * 16)
    raw = sign(key, message)
    assert bus.receiver.deliver(raw) is not None  # a topic the replicas accept
    assert await here.verify(token, NOW) is None


async def test_a_token_created_elsewhere_is_found_and_the_index_refreshes(store: Store) -> None:
    engine = store.engine  # type: ignore[attr-defined]
    admin_store = AdminTokenStore(engine)
    clock = [0.0]
    index = IdIndex(
        admin_store.ids_changed,
        what="admin token",
        refresh_s=3600,
        lookups_per_s=1,
        clock=lambda: clock[0],
    )
    await index.start()
    try:
        here = AdminTokenService(admin_store, b"p" * 32, ttl=60.0, index=index)
        elsewhere = AdminTokenService(admin_store, b"p" * 32)
        for _ in range(5):  # the budget spent on made-up ids
            assert await here.verify(generate_token()[1], NOW) is None
        record, token = await elsewhere.create(
            name="b", role="viewer", created_by="t", now=NOW - timedelta(seconds=1)
        )
        assert await here.verify(token, NOW) is None  # unknown to the index, no budget left
        await index.refresh()  # the next refresh knows it
        assert await here.verify(token, NOW) == record
        assert index.skipped >= 4
    finally:
        await index.close()
