"""The issuer's signing keys: a JWKS fetched over HTTPS, cached, refreshed with a rate limit.

* Fetched at start, again in the background once older than ``max_age``, and at once when a
  token names an unknown ``kid`` (key rollover) -- but at most once per
  ``min_refresh_interval``, however many unknown kids arrive: a flood of made-up kids costs
  one fetch per interval, never one per request. Concurrent lookups share one fetch.
* The answer must be HTTPS, 200, ``application/json`` or ``application/jwk-set+json``,
  uncompressed (no decompression bomb), at most 256 KiB (read to its end, however it is
  split on the wire); redirects are not followed. Its entries are read one by one
  (:mod:`.jwk`): bad ones are skipped, weak ones dropped, and each fetch writes at most one
  log line (what was ignored, or why the fetch failed). An answer with no usable key, like
  a failed fetch, keeps the keys already known.
* A gateway whose JWKS is unreachable or broken at start starts anyway: Entra tokens get 503
  (:func:`unavailable`) until a fetch succeeds, Keyguard keys are not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Collection

import aiohttp
import orjson

from ..errors import UpstreamError
from .jwk import MAX_KID_LENGTH, SigningKey, read_key_set

__all__ = ["JwksCache", "JwksError", "MAX_JWKS_BYTES", "ssl_context", "unavailable"]

log = logging.getLogger("keyguard.identity")

MAX_JWKS_BYTES = 256 * 1024
_CONTENT_TYPES = frozenset({"application/json", "application/jwk-set+json"})


class JwksError(Exception):
    """The JWKS could not be fetched or parsed (the message is for logs)."""


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The system trust store, plus ``ca_file`` when given (a private PKI, tests)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


def unavailable() -> UpstreamError:
    return UpstreamError(
        "Keyguard cannot check Entra ID tokens right now (the identity provider's signing keys "
        "are unavailable); retry shortly.",
        status=503,
        code="ServiceUnavailable",
        reason="jwks_unavailable",
    )


class JwksCache:
    def __init__(
        self,
        uri: str,
        *,
        algorithms: Collection[str],
        ssl: ssl.SSLContext,
        timeout: float = 5.0,
        min_refresh_interval: float = 30.0,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uri = uri
        self._algorithms = frozenset(algorithms)
        self._ssl = ssl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._min_interval = min_refresh_interval
        self._max_age = max_age
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._inflight: asyncio.Future[None] | None = None
        self._background: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0  # attempts made (observability, tests)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    async def start(self) -> None:
        """The first fetch; a failure is logged (one line), never raised."""
        with contextlib.suppress(JwksError):
            await self.refresh()

    async def close(self) -> None:
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(BaseException):
                await self._background
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, kid: str) -> SigningKey | None:
        """The key ``kid``, fetching the JWKS again if it is unknown and the rate limit allows;
        ``None`` when the issuer does not have it. 503 when no key was ever fetched."""
        key = self._keys.get(kid)
        now = self._clock()
        if key is not None:
            if self._fetched_at is not None and now - self._fetched_at >= self._max_age:
                self._refresh_in_background()
            return key
        if len(kid) > MAX_KID_LENGTH:
            return None
        if self._last_attempt is None or now - self._last_attempt >= self._min_interval:
            with contextlib.suppress(JwksError):  # logged in refresh(); old keys stay
                await self.refresh()
        if not self._keys:
            raise unavailable()
        return self._keys.get(kid)

    async def refresh(self) -> None:
        """Fetch now (sharing a fetch already in flight); raise :class:`JwksError`."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight = fut
        self._last_attempt = self._clock()
        self.fetches += 1
        try:
            keys = await self._fetch()
            self._keys = keys
            self._fetched_at = self._clock()
            fut.set_result(None)
        except JwksError as exc:
            log.warning(
                "identity: fetching the signing keys from %s failed: %s; %s",
                self._uri,
                exc,
                f"the {len(self._keys)} keys already known stay in use"
                if self._keys
                else "Entra ID tokens are answered 503 until a fetch succeeds",
            )
            fut.set_exception(exc)
            fut.exception()
            raise
        except BaseException as exc:
            fut.set_exception(JwksError(type(exc).__name__))
            fut.exception()
            raise
        finally:
            self._inflight = None

    def _refresh_in_background(self) -> None:
        if self._background is not None and not self._background.done():
            return
        if self._last_attempt is not None and self._clock() - self._last_attempt < 1.0:
            return

        async def run() -> None:
            with contextlib.suppress(JwksError):
                await self.refresh()

        self._background = asyncio.ensure_future(run())

    async def _fetch(self) -> dict[str, SigningKey]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, trust_env=False, auto_decompress=False
            )
        try:
            async with self._session.get(
                self._uri,
                ssl=self._ssl,
                allow_redirects=False,
                headers={"Accept": "application/json", "Accept-Encoding": "identity"},
            ) as resp:
                if resp.status != 200:
                    raise JwksError(f"HTTP {resp.status}")
                if resp.headers.get("Content-Encoding", "identity").lower() != "identity":
                    raise JwksError("a compressed answer (asked for identity)")
                if resp.content_type not in _CONTENT_TYPES:
                    raise JwksError(f"the content type {resp.content_type!r:.60} is not JSON")
                if (resp.content_length or 0) > MAX_JWKS_BYTES:
                    raise JwksError("the answer is too large")
                body = await read_bounded(resp.content, MAX_JWKS_BYTES)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise JwksError(type(exc).__name__) from exc
        return self._parse(body)

    def _parse(self, body: bytes) -> dict[str, SigningKey]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise JwksError("not a JWK set (not JSON)") from None
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise JwksError("not a JWK set (no 'keys' list)")
        found = read_key_set(entries, self._algorithms)
        ignored = "; ".join(found.problems[:10])
        if len(found.problems) > 10:
            ignored += f"; and {len(found.problems) - 10} more"
        if not found.keys:
            raise JwksError(
                "no usable signing key for "
                + ", ".join(sorted(self._algorithms))
                + (f" (ignored: {ignored})" if ignored else "")
            )
        if ignored:
            log.warning(
                "identity: signing keys from %s: %d kept, ignored: %s",
                self._uri,
                len(found.keys),
                ignored,
            )
        return found.keys


async def read_bounded(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body, to its end however it arrives; :class:`JwksError` past ``limit``."""
    body = bytearray()
    async for chunk in content.iter_any():
        body += chunk
        if len(body) > limit:
            raise JwksError("the answer is too large")
    return bytes(body)
