"""Raw key -> rotation, end to end: an app presents the upstream's own Azure key to the gateway;
the security event names the upstream, the scheduler rotates it, and the emulator refuses the
old key afterwards while the gateway keeps serving with the new one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest

from keyguard.events import AdminAction, Event, SecurityEvent
from keyguard.server import Gateway
from keyguard.wiring.runtime import open_runtime
from tests.support.emulators import data_plane_status
from tests.support.settings import keyguard_settings, managed_upstream

from .rotation_helpers import FAST_ROTATION, VAULT

WAIT_S = 60


async def test_presenting_the_upstream_key_rotates_that_upstream(
    tmp_path: Path, azure_emulator: Any
) -> None:
    settings = keyguard_settings(
        tmp_path,
        upstreams=[managed_upstream(azure_emulator, VAULT, name="east")],
        rotation=FAST_ROTATION,
    )
    in_service, _ = azure_emulator.keys()
    rt = await open_runtime(settings, {})
    try:
        await rt.vault.put("upstream/east", in_service)
    finally:
        await rt.close()
    gateway = Gateway(settings, {})
    await gateway.start()
    events: list[Event] = []
    rotated = asyncio.Event()

    def seen(event: Event) -> None:
        events.append(event)
        if isinstance(event, AdminAction) and event.action == "upstream.rotate":
            rotated.set()

    assert gateway.runtime is not None
    gateway.runtime.events.subscribe(seen)
    try:
        _, app_key = await gateway.runtime.keys.create("billing", now=datetime.now(UTC))
        stolen = openai.AsyncAzureOpenAI(
            azure_endpoint=gateway.proxy_url, api_key=in_service, api_version="2024-10-21",
            max_retries=0,
        )  # fmt: skip
        async with stolen:
            with pytest.raises(openai.AuthenticationError):
                await stolen.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=1
                )
        raw = "raw_azure_key_presented"
        [event] = [e for e in events if isinstance(e, SecurityEvent) and e.kind == raw]
        assert event.upstream == "east"  # the upstream, not the vault secret
        assert event.evidence["vault_secret"] == "upstream/east"
        await asyncio.wait_for(rotated.wait(), WAIT_S)
        assert gateway.rotation is not None and gateway.rotation.scheduler is not None
        await asyncio.wait_for(gateway.rotation.scheduler.idle(), WAIT_S)
        assert gateway.rotation.scheduler.completed == [("east", f"event:{raw}", "done")]
        assert (
            await data_plane_status(azure_emulator.http_url, in_service) == 401
        )  # the old key is dead
        app = openai.AsyncAzureOpenAI(
            azure_endpoint=gateway.proxy_url, api_key=app_key, api_version="2024-10-21",
            max_retries=0,
        )  # fmt: skip
        async with app:  # and the gateway serves with the new one
            reply = await app.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=1
            )
        assert reply.choices
    finally:
        await gateway.stop()
