"""The one way tests start a gateway, and the calls they make to it.

::

    async with running_gateway(tmp_path, emulator, limits={...}) as gw:
        _, key = await new_key(gw, "billing")
        async with azure_client(gw, key) as client:
            await client.chat.completions.create(model="gpt-4o", messages=[...])

:func:`running_gateway` builds the settings with :mod:`tests.support.settings` (its keyword
arguments are the builder's: ``upstreams``, ``policy``, ``access``, ``limits``, ``monitor``,
``rotation``, ``proxy`` ...), stores the upstream keys in the vault, starts a real
:class:`~keyguard.server.Gateway` on loopback ports and stops it on exit, so a test can look at
what it left behind (rows, logs) after the block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai

from keyguard.config import Settings
from keyguard.emulator import RunningEmulator
from keyguard.server import Gateway
from keyguard.wiring.runtime import Runtime, open_runtime
from tests.support.emulators import API_VERSION
from tests.support.settings import keyguard_settings, upstream


async def store_secrets(settings: Settings, secrets: Mapping[str, str]) -> None:
    """Put each secret into the vault of the store ``settings`` name."""
    rt = await open_runtime(settings, {})
    try:
        for name, value in secrets.items():
            await rt.vault.put(name, value)
    finally:
        await rt.close()


@asynccontextmanager
async def running_gateway(
    tmp: Path,
    emulator: RunningEmulator | None = None,
    *,
    vault: Mapping[str, str] | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> AsyncIterator[Gateway]:
    """A started gateway whose state lives in ``tmp``, stopped on exit.

    With ``emulator`` (and no ``upstreams``) that emulator is the one upstream, ``emulator``,
    serving every deployment, its key1 in the vault. ``vault`` holds more secrets to store
    first (``{"upstream/east": key}``). ``settings`` replaces the builder, e.g. to start a
    second replica of a running gateway.
    """
    if settings is not None and options:
        raise TypeError(f"settings= replaces the builder: {sorted(options)} would be ignored")
    secrets = dict(vault or {})
    if emulator is not None and "upstreams" not in options:
        options["upstreams"] = [upstream(emulator.url)]
        secrets.setdefault("upstream/emulator", emulator.keys()[0])
    if settings is None:
        settings = keyguard_settings(tmp, **options)
    if secrets:
        await store_secrets(settings, secrets)
    gateway = Gateway(settings, {})
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


async def start_gateway(tmp: Path, upstream_url: str, upstream_key: str, **proxy: Any) -> Gateway:
    """A started gateway in front of one upstream (its key stored as ``upstream/emulator``),
    with ``proxy`` settings, for tests that stop it themselves (``await gateway.stop()``)."""
    settings = keyguard_settings(tmp, upstreams=[upstream(upstream_url)], proxy=proxy)
    await store_secrets(settings, {"upstream/emulator": upstream_key})
    gateway = Gateway(settings, {})
    await gateway.start()
    return gateway


def runtime(gateway: Gateway) -> Runtime:
    """The started gateway's runtime (store, vault, keys, events)."""
    assert gateway.runtime is not None, "the gateway is not started"
    return gateway.runtime


async def new_key(
    gateway: Gateway,
    app: str = "app",
    *,
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> tuple[str, str]:
    """A new Keyguard key for ``app``: its key id and the key."""
    record, key = await runtime(gateway).keys.create(
        app, now=now or datetime.now(UTC), expires_in=expires_in
    )
    return record.key_id, key


def azure_client(
    gateway: Gateway, key: str | None = None, **options: Any
) -> openai.AsyncAzureOpenAI:
    """The official SDK's Azure client for the gateway's proxy, with no retries. Without
    ``key``, pass the credential in ``options`` (``azure_ad_token_provider=...``)."""
    if key is not None:
        options["api_key"] = key
    return openai.AsyncAzureOpenAI(
        azure_endpoint=gateway.proxy_url, api_version=API_VERSION, max_retries=0, **options
    )


def v1_client(gateway: Gateway, key: str, **options: Any) -> openai.AsyncOpenAI:
    """The official SDK's v1 client (``/openai/v1/``) for the gateway's proxy, no retries."""
    return openai.AsyncOpenAI(
        base_url=f"{gateway.proxy_url}/openai/v1/", api_key=key, max_retries=0, **options
    )
