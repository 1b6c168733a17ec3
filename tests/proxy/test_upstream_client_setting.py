"""``proxy.upstream_client`` chooses the upstream side of the transport seam: aiohttp by
default, pyreqwest when asked; anything else refuses the start, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyguard.config import ProxySettings
from keyguard.errors import ConfigurationError
from keyguard.proxy.aiohttp_client import AiohttpUpstream
from keyguard.proxy.pyreqwest_client import PyreqwestUpstream
from keyguard.server import upstream_client
from tests.support.settings import keyguard_settings


def test_aiohttp_is_the_default() -> None:
    assert ProxySettings().upstream_client == "aiohttp"


@pytest.mark.parametrize(
    ("name", "adapter"), [("aiohttp", AiohttpUpstream), ("pyreqwest", PyreqwestUpstream)]
)
async def test_the_configured_client_is_the_one_made(
    tmp_path: Path, name: str, adapter: type[object]
) -> None:
    settings = keyguard_settings(tmp_path, proxy={"upstream_client": name})
    client = upstream_client(settings.proxy)
    try:
        assert isinstance(client, adapter)
    finally:
        await client.close()


def test_an_unknown_client_refuses_the_start_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="upstream_client"):
        keyguard_settings(tmp_path, proxy={"upstream_client": "httpx"})
