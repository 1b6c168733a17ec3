"""A token validator trusting the shared local OIDC issuer (``issuer``), its JWKS cache reading
the shared fake ``clock``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keyguard.emulator import RunningEmulator
from keyguard.identity.jwks import JwksCache, ssl_context
from keyguard.identity.settings import EntraSettings
from keyguard.identity.tokens import TokenValidator
from tests.support.clock import FakeClock
from tests.support.issuer import LocalIssuer


@pytest.fixture
async def validator(issuer: LocalIssuer, clock: FakeClock) -> AsyncIterator[TokenValidator]:
    settings = EntraSettings(
        **issuer.entra(
            algorithms=["RS256", "ES256"], clock_skew_s=30, jwks_refresh_min_interval_s=60
        )
    )
    cache = JwksCache(
        settings.jwks_uri,
        algorithms=settings.algorithms,
        ssl=ssl_context(settings.ca_file),
        min_refresh_interval=settings.jwks_refresh_min_interval_s,
        clock=clock,
    )
    await cache.start()
    try:
        yield TokenValidator(settings, cache.get)
    finally:
        await cache.close()


@pytest.fixture
def upstream(emulator: RunningEmulator) -> RunningEmulator:
    """The emulator the gateway forwards to, in the Entra edge tests' words."""
    return emulator


@pytest.fixture
def idp(tls_emulator: RunningEmulator) -> RunningEmulator:
    """The emulator over HTTPS as the identity provider (token endpoint, issuer, JWKS)."""
    return tls_emulator
