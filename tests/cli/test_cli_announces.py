"""A change made with the CLI reaches the running replicas over the replica bus at once, not at
their next cache expiry (the key cache lives a minute here)."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path

import aiohttp
import openai
import pytest

from keyguard.cli.support import cli_actor
from keyguard.emulator.server import RunningEmulator
from keyguard.wiring.access import open_admin_service
from tests.support.gateway import azure_client, new_key, running_gateway, runtime
from tests.support.settings import write_config

pytestmark = pytest.mark.redis

HI = [{"role": "user", "content": "hi"}]


async def test_keys_revoke_on_the_command_line_is_in_force_on_a_running_gateway_at_once(
    tmp_path: Path, emulator: RunningEmulator, redis_url: str
) -> None:
    channel = f"keyguard-test:{secrets.token_hex(6)}"
    async with running_gateway(
        tmp_path,
        emulator,
        cluster={"bus": redis_url, "channel": channel},
        proxy={"key_cache_ttl_s": 60},
    ) as gw:
        key_id, key = await new_key(gw, "cli-revoked")
        async with azure_client(gw, key) as client:
            await client.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
            assert gw.authenticator is not None
            dropped = asyncio.Event()
            real = gw.authenticator.invalidate

            def invalidate(changed: str) -> None:
                if changed == key_id:
                    dropped.set()
                real(changed)

            gw.authenticator.invalidate = invalidate  # type: ignore[method-assign,assignment]
            config = write_config(tmp_path, gw.settings, "cli.yaml")
            process = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("keyguard")),
                "keys",
                "revoke",
                key_id,
                "--config",
                str(config),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={k: v for k, v in os.environ.items() if not k.startswith("KEYGUARD_")},
            )
            out, err = await process.communicate()
            assert process.returncode == 0, err.decode()
            await asyncio.wait_for(dropped.wait(), 5)  # the CLI told the gateway
            with pytest.raises(openai.AuthenticationError, match="revoked"):
                await client.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]


async def test_admin_tokens_revoke_on_the_command_line_is_in_force_on_a_running_gateway(
    tmp_path: Path, emulator: RunningEmulator, redis_url: str
) -> None:
    """The admin port caches token records (a minute here): the CLI's revocation drops the
    cached record over the bus, so the token is refused at once, not when the record expires."""
    channel = f"keyguard-test:{secrets.token_hex(6)}"
    async with (
        running_gateway(
            tmp_path,
            emulator,
            cluster={"bus": redis_url, "channel": channel},
            proxy={"key_cache_ttl_s": 60},
        ) as gw,
        aiohttp.ClientSession() as http,
    ):
        service = await open_admin_service(runtime(gw))
        record, token = await service.create_admin_token(cli_actor(), name="ops", role="viewer")
        headers = {"Authorization": f"Bearer {token}"}

        async def status() -> int:
            async with http.get(gw.admin_url + "/admin/keys", headers=headers) as resp:
                return resp.status

        assert await status() == 200  # its record is cached now
        assert gw.access is not None
        tokens = gw.access.api.service.tokens
        dropped = asyncio.Event()
        real = tokens.forget

        def forget(changed: str) -> None:
            real(changed)
            if changed == record.token_id:
                dropped.set()

        tokens.forget = forget  # type: ignore[method-assign,assignment]
        config = write_config(tmp_path, gw.settings, "cli.yaml")
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("keyguard")),
            "admin",
            "tokens",
            "revoke",
            record.token_id,
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("KEYGUARD_")},
        )
        _, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        await asyncio.wait_for(dropped.wait(), 5)  # the CLI told the gateway
        assert await status() == 401
