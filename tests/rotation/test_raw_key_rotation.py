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
from rotation_helpers import FAST_ROTATION, data_plane_status, upstream_config

from keyguard.config import settings_from_mapping
from keyguard.events import AdminAction, Event, SecurityEvent
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.runtime import open_runtime

WAIT_S = 60


async def test_presenting_the_upstream_key_rotates_that_upstream(
    tmp_path: Path, azure_emulator: Any
) -> None:
    create_master_key_file(tmp_path / "master.key")
    settings = settings_from_mapping(
        {
            "listen": {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0"},
            "store": f"sqlite:///{tmp_path / 'keyguard.db'}",
            "master_key_file": str(tmp_path / "master.key"),
            "upstreams": [upstream_config(azure_emulator, {"vault": "upstream/east"})],
            "rotation": FAST_ROTATION,
        }
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
        assert await data_plane_status(azure_emulator, in_service) == 401  # the old key is dead
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
