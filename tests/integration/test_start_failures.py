"""A gateway whose start fails part-way stops what it had started and reports the failure:
it never hangs, and it leaves no task behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from keyguard.emulator import RunningEmulator
from keyguard.errors import ConfigurationError
from keyguard.server import Gateway
from tests.support.gateway import store_secrets
from tests.support.settings import keyguard_settings, upstream

from ..support.emulators import API_VERSION  # noqa: F401  (the package's shared constants)


async def test_a_start_that_fails_after_the_background_loops_began_stops_them(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    # budgets for a deployment without a price: refused when limits start, which is after
    # rotation's loops (whose first check is woken at once) are running
    settings = keyguard_settings(
        tmp_path,
        upstreams=[upstream(emulator.url)],
        limits={"budgets": [{"name": "b", "scope": "app", "per_day": 1.0}], "prices": {}},
    )
    await store_secrets(settings, {"upstream/emulator": emulator.keys()[0]})
    before = {t for t in asyncio.all_tasks() if not t.done()}
    gateway = Gateway(settings, {})
    with pytest.raises(ConfigurationError, match="no price"):
        await asyncio.wait_for(gateway.start(), 30)
    left = {t for t in asyncio.all_tasks() if not t.done()} - before - {asyncio.current_task()}
    assert not [t.get_name() for t in left]
