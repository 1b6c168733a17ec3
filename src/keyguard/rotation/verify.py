"""Before a new upstream key goes into service: one cheap data-plane call must accept it.

``GET {endpoint}/openai/v1/models`` with ``api-key``: no tokens are spent, no deployment is
needed, and Azure answers 401 for a key it does not (yet) know. The key is sent to the
configured endpoint only, redirects are not followed, and TLS is verified.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Protocol

import aiohttp

from ..upstream.tls import is_certificate_error

__all__ = ["Verifier", "DataPlaneVerifier", "CannotVerify"]


class CannotVerify(Exception):
    """The endpoint could not be asked at all (its TLS certificate is not trusted): the new
    key was not refused, and asking again will not help."""


class Verifier(Protocol):
    async def __call__(self, endpoint: str, key: str) -> str | None:
        """``None`` when ``key`` is accepted, else a short reason (never the key)."""
        ...


class DataPlaneVerifier:
    def __init__(
        self, *, timeout_s: float = 10.0, trust: Mapping[str, ssl.SSLContext | bool] | None = None
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._trust = dict(trust or {})  # endpoint -> its upstream's TLS trust (ca_file)

    async def __call__(self, endpoint: str, key: str) -> str | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
            )
        try:
            async with self._session.get(
                f"{endpoint}/openai/v1/models",
                headers={"api-key": key},
                allow_redirects=False,
                ssl=self._trust.get(endpoint, True),
            ) as response:
                await response.read()
                return None if response.status == 200 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            if is_certificate_error(exc):
                raise CannotVerify(
                    f"the TLS certificate of {endpoint} is not trusted; set the upstream's "
                    "ca_file to the CA that signed it (docs/operations.md)"
                ) from None
            return type(exc).__name__

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
