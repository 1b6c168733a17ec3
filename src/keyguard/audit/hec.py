"""A SIEM stream: committed audit lines as JSON over HTTPS, Splunk HEC-compatible.

Every committed record, checkpoint and head set (the export's lines, chain fields and all, so
the SIEM's copy verifies with ``keyguard audit verify --file``) is posted to the HTTP Event
Collector endpoint (``monitor.audit.hec_url``, e.g. ``https://splunk:8088/services/collector
/event``) as one event per line::

    {"time": 1764751234.5, "sourcetype": "keyguard:audit", "source": "keyguard", "event": {...}}

with ``Authorization: Splunk <token>`` (the token is the vault secret named by
``monitor.audit.hec_token_secret``; never logged). A sender thread posts batches of at most
:data:`BATCH` lines in order; a failed post (connection error, timeout, any status but 2xx)
is retried with exponential back-off (``initial_s`` doubling to ``max_s``) until it goes
through, after the collector's ``Retry-After`` when it gives one: the stream never skips a
line. Lines wait in a bounded buffer (``max_lines``); when the SIEM is down that long, the
oldest are dropped and counted (the store keeps them: export and resend). ``lag()`` is the age
of the oldest line not yet delivered. The buffer, thread and back-off are :mod:`.delivery`'s.
Only ``https`` URLs are taken, except on a loopback address.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import time
from urllib.parse import urlsplit

import orjson

from ..errors import ConfigurationError
from .delivery import DELIVERED, Attempt, Stream, retry_after_s

__all__ = ["HecSink", "BATCH"]

log = logging.getLogger("keyguard.audit")
BATCH = 500  # lines per post
_BATCH_BYTES = 16_000_000  # bytes per post at most (a longer line is refused alone, counted)
_TIMEOUT_S = 10.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class HecSink(Stream):
    receiver = "the HEC endpoint"

    def __init__(
        self,
        url: str,
        token: str,
        *,
        max_lines: int = 100_000,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme != "https" and not (parts.scheme == "http" and host in _LOOPBACK):
            raise ConfigurationError(
                "monitor.audit.hec_url: use an https:// URL (plain http only on loopback)"
            )
        super().__init__(
            max_lines=max_lines,
            initial_s=initial_s,
            max_s=max_s,
            batch_lines=BATCH,
            batch_bytes=_BATCH_BYTES,
            name="keyguard-audit-hec",
        )
        self._secure = parts.scheme == "https"
        self._host, self._port = host, parts.port or (443 if self._secure else 80)
        self._path = parts.path or "/services/collector/event"
        self._auth = f"Splunk {token}"
        self._context = context or ssl.create_default_context()
        self.start()

    def _send(self, batch: list[str]) -> Attempt:
        body = b"\n".join(_event(line) for line in batch)
        conn: http.client.HTTPConnection
        if self._secure:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=_TIMEOUT_S, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=_TIMEOUT_S)
        try:
            conn.request(
                "POST",
                self._path,
                body=body,
                headers={"Authorization": self._auth, "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read(65_536)
            if 200 <= response.status < 300:
                return DELIVERED
            log.warning("audit: the HEC endpoint answered %d; retrying", response.status)
            return Attempt(False, retry_after_s(response.getheader("Retry-After"), time.time()))
        except (OSError, http.client.HTTPException) as exc:
            log.warning("audit: the HEC endpoint failed (%s); retrying", type(exc).__name__)
            return Attempt(False)
        finally:
            conn.close()


def _event(line: str) -> bytes:
    obj = orjson.loads(line)
    at = obj.get("created", "")
    stamp = _epoch(at) if isinstance(at, str) else None
    return orjson.dumps(
        {"time": stamp, "sourcetype": "keyguard:audit", "source": "keyguard", "event": obj}
    )


def _epoch(created: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
