"""A running local OIDC issuer (HTTPS, real keys) and Entra settings that trust it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keyguard.emulator import EmulatorConfig, RunningEmulator, start_emulator
from keyguard.identity.settings import EntraSettings

from .issuer import AUDIENCE, LocalIssuer, start_issuer


@pytest.fixture
async def issuer(tmp_path: Path) -> AsyncIterator[LocalIssuer]:
    running = await start_issuer(tmp_path / "issuer-tls")
    try:
        yield running
    finally:
        await running.stop()


def entra_settings(issuer: LocalIssuer, **overrides: Any) -> EntraSettings:
    values: dict[str, Any] = {
        "tenants": [issuer.tenant],
        "audiences": [AUDIENCE],
        "jwks_uri": issuer.jwks_uri,
        "ca_file": str(issuer.ca_file),
        "algorithms": ["RS256", "ES256"],
        "clock_skew_s": 30,
        "jwks_refresh_min_interval_s": 60,
    }
    values.update(overrides)
    return EntraSettings(**values)


@pytest.fixture
async def upstream() -> AsyncIterator[RunningEmulator]:
    """The Azure OpenAI emulator the gateway forwards to (plain HTTP on loopback)."""
    running = await start_emulator(EmulatorConfig())
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[RunningEmulator]:
    """An emulator over HTTPS used as the identity provider: managed-identity token endpoint,
    JWKS and OpenID configuration."""
    running = await start_emulator(EmulatorConfig(), tls_dir=tmp_path / "idp-tls")
    try:
        yield running
    finally:
        await running.stop()
