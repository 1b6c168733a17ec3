"""Replicas with a PostgreSQL store and no Redis: the replica bus over LISTEN/NOTIFY carries a
revocation made on one replica to the other at once (the key cache lives a minute here)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import openai
import pytest

from keyguard.cli.support import cli_actor
from keyguard.emulator.server import RunningEmulator
from keyguard.server import Gateway
from tests.support.gateway import azure_client, new_key, running_gateway

pytestmark = pytest.mark.postgres

HI = [{"role": "user", "content": "hi"}]


def applied(gateway: Gateway, key_id: str) -> asyncio.Event:
    assert gateway.authenticator is not None
    event = asyncio.Event()
    real = gateway.authenticator.invalidate

    def invalidate(changed: str) -> None:
        if changed == key_id:
            event.set()
        real(changed)

    gateway.authenticator.invalidate = invalidate  # type: ignore[method-assign,assignment]
    return event


async def test_a_revocation_reaches_the_other_replica_over_listen_notify(
    tmp_path: Path, emulator: RunningEmulator, postgres_database: str
) -> None:
    async with running_gateway(
        tmp_path,
        emulator,
        store=postgres_database,
        cluster={"bus": postgres_database, "channel": "keyguard-test-bus"},
        proxy={"key_cache_ttl_s": 60},
    ) as a:
        async with running_gateway(tmp_path, settings=a.settings) as b:
            key_id, key = await new_key(a, "notified")
            for gw in (a, b):  # both replicas cache the active record for a minute
                async with azure_client(gw, key) as client:
                    await client.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
            dropped = applied(b, key_id)
            assert a.access is not None
            started = time.monotonic()
            await a.access.api.service.change_key(cli_actor(), key_id, "revoke")
            await asyncio.wait_for(dropped.wait(), 10)
            assert time.monotonic() - started < 1.0
            async with azure_client(b, key) as client:
                with pytest.raises(openai.AuthenticationError, match="revoked"):
                    await client.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
            assert b.bus is not None and b.bus.dropped == 0
