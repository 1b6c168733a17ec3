"""Before a new upstream key goes into service: one cheap data-plane call must accept it.

``GET {endpoint}/openai/v1/models`` with ``api-key``: no tokens are spent, no deployment is
needed, and Azure answers 401 for a key it does not (yet) know. The key is sent to the
configured endpoint only, redirects are not followed, and TLS is verified.
"""

from __future__ import annotations

from typing import Protocol

import aiohttp

__all__ = ["Verifier", "DataPlaneVerifier"]


class Verifier(Protocol):
    async def __call__(self, endpoint: str, key: str) -> str | None:
        """``None`` when ``key`` is accepted, else a short reason (never the key)."""
        ...


class DataPlaneVerifier:
    def __init__(self, *, timeout_s: float = 10.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, endpoint: str, key: str) -> str | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
            )
        try:
            async with self._session.get(
                f"{endpoint}/openai/v1/models", headers={"api-key": key}, allow_redirects=False
            ) as response:
                await response.read()
                return None if response.status == 200 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
