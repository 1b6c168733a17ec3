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
through: the stream never skips a line. Lines wait in a bounded buffer (``max_lines``); when
the SIEM is down that long, the oldest are dropped and counted (the store keeps them: export
and resend). ``lag()`` is the age of the oldest line not yet delivered. Only ``https`` URLs
are taken, except on a loopback address.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from urllib.parse import urlsplit

import orjson

from ..errors import ConfigurationError

__all__ = ["HecSink", "BATCH"]

log = logging.getLogger("keyguard.audit")
BATCH = 500  # lines per post
_TIMEOUT_S = 10.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class HecSink:
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
        self._secure = parts.scheme == "https"
        self._host, self._port = host, parts.port or (443 if self._secure else 80)
        self._path = parts.path or "/services/collector/event"
        self._auth = f"Splunk {token}"
        self._context = context or ssl.create_default_context()
        self._lines: deque[tuple[int, float, str]] = deque()  # (number, time handed, line)
        self._number = 0
        self._max = max_lines
        self._initial, self._max_s = initial_s, max_s
        self._cond = threading.Condition()
        self._closing = False
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="keyguard-audit-hec", daemon=True)
        self._thread.start()

    # -- the writer's side (any thread) ------------------------------------------------------

    def write(self, lines: Sequence[str]) -> None:
        now = time.time()
        with self._cond:
            for line in lines:
                if len(self._lines) >= self._max:
                    self._lines.popleft()
                    self.dropped += 1
                self._number += 1
                self._lines.append((self._number, now, line))
            self._cond.notify()

    def lag(self) -> float:
        """Seconds since the oldest line not yet delivered was handed over (0: none)."""
        with self._cond:
            return time.time() - self._lines[0][1] if self._lines else 0.0

    @property
    def waiting(self) -> int:
        return len(self._lines)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what waits (for at most ``timeout_s``), then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout_s)
        if self._lines:
            log.error("audit: %d lines not delivered to the HEC endpoint", len(self._lines))

    # -- the sender thread -------------------------------------------------------------------

    def _run(self) -> None:
        delay = self._initial
        while True:
            with self._cond:
                while not self._lines and not self._closing:
                    self._cond.wait()
                if not self._lines:
                    return
                taken = [self._lines[i] for i in range(min(BATCH, len(self._lines)))]
            batch = [line for _, _, line in taken]
            if self._post(batch):
                with self._cond:  # lines dropped meanwhile were the oldest: pop what was sent
                    while self._lines and self._lines[0][0] <= taken[-1][0]:
                        self._lines.popleft()
                    self.sent += len(batch)
                delay = self._initial
                continue
            self.failures += 1
            with self._cond:
                if self._closing:
                    return
                self._cond.wait(delay)  # back off; close() wakes it
            delay = min(delay * 2, self._max_s)

    def _post(self, batch: list[str]) -> bool:
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
            ok = 200 <= response.status < 300
            if not ok:
                log.warning("audit: the HEC endpoint answered %d; retrying", response.status)
            return ok
        except (OSError, http.client.HTTPException) as exc:
            log.warning("audit: the HEC endpoint failed (%s); retrying", type(exc).__name__)
            return False
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
