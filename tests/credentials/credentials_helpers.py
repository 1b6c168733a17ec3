"""Helpers for upstream-credential tests: a gateway in front of the TLS/plain emulator, SDK
clients, and a log capture for canaries."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import openai

from keyguard.config import settings_from_mapping
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file

API_VERSION = "2024-10-21"
MESSAGES: Any = [{"role": "user", "content": "Hello, world!"}]


def gateway_config(tmp: Path, upstream: dict[str, Any], **extra: Any) -> dict[str, Any]:
    if not (tmp / "master.key").exists():
        create_master_key_file(tmp / "master.key")
    return {
        "listen": {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "store": f"sqlite:///{tmp / 'keyguard.db'}",
        "master_key_file": str(tmp / "master.key"),
        "upstreams": [{"name": "emulator", "deployments": ["gpt-4o", "gpt-4o-mini"], **upstream}],
        **extra,
    }


async def start_gateway(config: dict[str, Any]) -> Gateway:
    gateway = Gateway(settings_from_mapping(config), {})
    await gateway.start()
    return gateway


def client(gateway: Gateway, key: str) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(
        azure_endpoint=gateway.proxy_url, api_key=key, api_version=API_VERSION, max_retries=0
    )


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
