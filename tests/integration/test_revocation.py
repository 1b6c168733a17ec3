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
            revoked_at = time.monotonic()  # the change is in the store
        finally:
            await other.close()
        # The bound is on when a request is *sent*, not on how long the answers take (a loaded
        # machine may answer slowly): a cached record is never served past ``TTL`` after the
        # read that produced it, and every read from here on sees the revocation.
        deadline = revoked_at + TTL
        sent: list[tuple[float, int]] = []
        while not sent or sent[-1][0] < deadline or len([1 for t, _ in sent if t >= deadline]) < 3:
            at = time.monotonic()
            sent.append((at, await status()))
    codes = [code for _, code in sent]
    assert set(codes) <= {200, 401}, codes
    first_refusal = codes.index(401)
    assert set(codes[first_refusal:]) == {401}, codes  # once refused, never served again
    late = [code for at, code in sent if at >= deadline]
    assert late and set(late) == {401}, sent
