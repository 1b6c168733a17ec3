"""Zero downtime: continuous load through the gateway (official ``openai`` SDK, streaming and
not, several clients) while 5 upstream key rotations (the key1/key2 flip, through the real
``azure-mgmt-cognitiveservices`` client against the emulator's ARM endpoints) and 5 Keyguard key
rotations run. Not one request may fail; after each upstream rotation the key it retired is
refused by the emulator; and no rotated-out or new key appears in a log line, an audit record,
an event or an error.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from keyguard.events import Event
from tests.support.emulators import API_VERSION, AzureEmulator, data_plane_status
from tests.support.gateway import azure_client, running_gateway
from tests.support.logs import LogCapture
from tests.support.settings import managed_upstream
from tests.support.stored import stored_bytes

from .limited import freeze

ROTATIONS = 5
CLIENTS = 4  # two streaming, two not
MESSAGES: Any = [{"role": "user", "content": "Say something about key rotation."}]
CHAT = "/openai/deployments/gpt-4o/chat/completions?api-version=" + API_VERSION


def _options(emulator: AzureEmulator) -> dict[str, Any]:
    """An upstream Keyguard can rotate, its key in the vault, fast credential refreshes."""
    return {
        "proxy": {"key_cache_ttl_s": 0.3},
        "upstreams": [managed_upstream(emulator)],
        "vault": {"upstream/emulator": emulator.keys()[0]},
        "rotation": {
            "credential_refresh_s": 0.2,
            "drain": 1,
            "switch_timeout": 60,
            "verify_backoff": 0.05,
            "check_interval": 3600,
        },
    }


@pytest.mark.slow
async def test_rotations_under_load_fail_no_request(
    tmp_path: Path, azure_emulator: AzureEmulator, logs: LogCapture
) -> None:
    seen_keys: set[str] = set(azure_emulator.keys())
    events: list[Event] = []
    failures: list[str] = []
    keyguard_keys: list[str] = []
    served: Counter[str] = Counter()
    async with running_gateway(tmp_path, **_options(azure_emulator)) as gateway:
        runtime = gateway.runtime
        rotation = gateway.rotation
        assert runtime is not None and rotation is not None
        runtime.events.subscribe(events.append)
        record, first_key = await runtime.keys.create("load", now=datetime.now(UTC))
        current = [first_key]
        keyguard_keys.append(first_key)
        used: dict[int, str] = {}
        progress = asyncio.Condition()
        stop = asyncio.Event()
        base = azure_client(gateway, first_key)

        async def client(n: int) -> None:
            streaming = n % 2 == 0
            for i in range(100_000):  # bounded; ends when the rotations are done
                if stop.is_set():
                    return
                key = current[0]
                api = base.with_options(api_key=key)
                model = "gpt-4o" if i % 2 else "gpt-4o-mini"
                try:
                    if streaming:
                        stream = await api.chat.completions.create(
                            model=model, messages=MESSAGES, stream=True
                        )
                        text = "".join(
                            [c.choices[0].delta.content or "" async for c in stream if c.choices]
                        )
                        assert text
                    else:
                        answer = await api.chat.completions.create(model=model, messages=MESSAGES)
                        assert answer.choices[0].message.content
                except Exception as exc:
                    failures.append(f"client {n}: {type(exc).__name__}: {exc}")
                    continue
                served["stream" if streaming else "json"] += 1
                async with progress:
                    used[n] = key
                    progress.notify_all()

        async def rotate_upstream() -> None:
            for _ in range(ROTATIONS):
                old = await runtime.vault.get("upstream/emulator")
                done = await rotation.service.rotate_upstream("emulator")
                assert done.state == "done", done.error
                seen_keys.update(azure_emulator.keys())
                assert await runtime.vault.get("upstream/emulator") in azure_emulator.keys()
                assert await data_plane_status(azure_emulator.http_url, old) == 401

        async def rotate_keyguard_key() -> None:
            for n in range(ROTATIONS):
                async with progress:  # every client uses the newest key before the next one
                    await progress.wait_for(
                        lambda: len(used) == CLIENTS and set(used.values()) == {current[0]}
                    )
                result = await rotation.keys.rotate(
                    record.key_id,
                    now=datetime.now(UTC),
                    grace=timedelta(minutes=5),
                    token=f"load-{n}",
                )
                assert result.record.key_id == record.key_id and not result.replayed
                current[0] = result.key
                keyguard_keys.append(result.key)
            async with progress:
                await progress.wait_for(lambda: set(used.values()) == {current[0]})

        clients = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
        try:
            await asyncio.wait_for(asyncio.gather(rotate_upstream(), rotate_keyguard_key()), 240)
        finally:
            stop.set()
            await asyncio.gather(*clients)
            await base.close()

    assert failures == []
    assert served["stream"] > 10 and served["json"] > 10
    usage = azure_emulator.state.usage_view()
    assert usage["total"]["failed"] == 0
    assert usage["total"]["requests"] == served["stream"] + served["json"]
    assert len(seen_keys) == 2 + 2 * ROTATIONS  # every rotation regenerated both keys
    # canary: no key, rotated-out or new, upstream or Keyguard, in logs, events, rows or errors
    text = "\n".join(logs.lines) + repr(events) + "\n".join(failures)
    stored = stored_bytes(tmp_path)
    for secret in [*seen_keys, *keyguard_keys]:
        assert secret not in text
        assert secret.encode() not in stored
    kinds = Counter(getattr(e, "action", getattr(e, "kind", "")) for e in events)
    assert kinds["upstream.rotate"] == ROTATIONS and kinds["keys.rotate"] == ROTATIONS


async def test_a_rotated_key_keeps_its_limits(
    tmp_path: Path, azure_emulator: AzureEmulator
) -> None:
    limits = {"default_max_tokens": 5, "rules": [{"scope": "key", "rpm": 2}]}
    async with running_gateway(tmp_path, **_options(azure_emulator), limits=limits) as gateway:
        assert gateway.runtime is not None and gateway.rotation is not None
        freeze(gateway)  # rpm counts per clock minute: all four requests in one
        async with aiohttp.ClientSession() as http:

            async def call(k: str) -> int:
                async with http.post(
                    gateway.proxy_url + CHAT, json={"messages": MESSAGES}, headers={"api-key": k}
                ) as response:
                    await response.read()
                    return response.status

            record, key = await gateway.runtime.keys.create("limited", now=datetime.now(UTC))
            statuses = [await call(key)]
            result = await gateway.rotation.keys.rotate(
                record.key_id, now=datetime.now(UTC), grace=timedelta(minutes=5)
            )
            statuses.append(await call(result.key))
            statuses.append(await call(result.key))  # the same key id: the same count
            statuses.append(await call(key))  # the old secret, in its grace: the same count
    assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429]
