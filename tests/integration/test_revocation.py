"""Revocation reaches a running gateway within the documented bound (``key_cache_ttl_s``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import aiohttp
import pytest

from keyguard.wiring.runtime import open_runtime
from tests.support.emulators import API_VERSION

from .harness import GatewayHarness

CHAT = "/openai/deployments/gpt-4o/chat/completions?api-version=" + API_VERSION
TTL = 0.5


@pytest.mark.parametrize("gateway_options", [{"key_cache_ttl_s": TTL}])
async def test_revocation_by_another_process_applies_within_the_ttl(
    gateway: GatewayHarness,
) -> None:
    key_id, key = await gateway.new_key()
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    async with aiohttp.ClientSession() as http:

        async def status() -> int:
            async with http.post(gateway.url + CHAT, json=body, headers={"api-key": key}) as r:
                return r.status

        assert await status() == 200  # the record is now cached
        # Revoke through a separate connection to the store, as `keyguard keys revoke` does.
        other = await open_runtime(gateway.gateway.settings, {})
        try:
            await other.keys.revoke(key_id, now=datetime.now(UTC))
        finally:
            await other.close()
        revoked_at = time.monotonic()
        statuses = []
        while time.monotonic() - revoked_at < TTL * 4:
            code = await status()
            statuses.append(code)
            if code == 401:
                break
        elapsed = time.monotonic() - revoked_at
    assert statuses[-1] == 401, statuses
    assert elapsed <= TTL + 0.25, f"revocation took {elapsed:.3f}s with ttl {TTL}s"
    assert set(statuses[:-1]) <= {200}
