"""A gateway with an ``access`` section (Entra tokens, policy, trusted proxies), for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keyguard.config import Settings, settings_from_mapping
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.runtime import open_runtime

API_VERSION = "2024-10-21"
DEPLOYMENTS = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "dall-e-3", "whisper", "tts"]


def access_settings(
    tmp: Path,
    upstream_url: str,
    access: dict[str, Any],
    *,
    monitor: dict[str, Any] | None = None,
    **proxy: Any,
) -> Settings:
    return settings_from_mapping(
        {
            "listen": {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0"},
            "store": f"sqlite:///{tmp / 'keyguard.db'}",
            "master_key_file": str(tmp / "master.key"),
            "proxy": proxy,
            "upstreams": [
                {
                    "name": "emulator",
                    "endpoint": upstream_url,
                    "credential": {"vault": "upstream/emulator"},
                    "deployments": DEPLOYMENTS,
                }
            ],
            "access": access,
            **({"monitor": monitor} if monitor is not None else {}),
        },
        base_dir=tmp,
    )


async def start_access_gateway(
    tmp: Path,
    upstream_url: str,
    upstream_key: str,
    access: dict[str, Any],
    *,
    policy: str | None = None,
    monitor: dict[str, Any] | None = None,
    **proxy: Any,
) -> Gateway:
    """A started gateway; ``policy`` (YAML) is written to ``tmp/policy.yaml`` and used."""
    if not (tmp / "master.key").exists():
        create_master_key_file(tmp / "master.key")
    if policy is not None:
        (tmp / "policy.yaml").write_text(policy)
        access = {**access, "policy": {"file": "policy.yaml", **access.get("policy", {})}}
    settings = access_settings(tmp, upstream_url, access, monitor=monitor, **proxy)
    rt = await open_runtime(settings, {})
    try:
        await rt.vault.put("upstream/emulator", upstream_key)
    finally:
        await rt.close()
    gateway = Gateway(settings, {})
    await gateway.start()
    return gateway
