"""A SIEM stream to Microsoft Sentinel: the Azure Monitor Logs Ingestion API.

Every committed record, checkpoint and head set is one row of the data collection rule's
stream (``monitor.audit.sentinel_stream``, e.g. ``Custom-KeyguardAudit_CL``), posted through
``azure-monitor-ingestion`` to the data collection endpoint (``sentinel_endpoint``, from the
configuration only) with Keyguard's own Entra identity (``sentinel_identity``, managed
identity by default: no secret; the identity needs the role *Monitoring Metrics Publisher* on
the rule)::

    {"TimeGenerated": "2026-12-03T08:00:00.000000Z", "RecordType": "record",
     "Chain": "3f2a...", "Seq": 812, "Kind": "request", "Hash": "...", "PrevHash": "...",
     "Line": "{\\"type\\":\\"record\\",...}"}

``Line`` is the export's line itself, byte for byte, so the SIEM's copy verifies with
``keyguard audit verify --file`` (``KeyguardAudit_CL | order by TimeGenerated asc | project
Line``); the other columns are the chain fields for queries. Batches are gzip JSON arrays of at
most 1 MB (Azure's limit per call, counted uncompressed here), built by this module so a batch
is one call: a call either takes the whole batch or is retried whole. A line whose row alone
exceeds 1 MB is refused and counted (the store keeps it). The SDK's own retries are off: the
buffer, the order and the back-off (a 429's or 503's ``Retry-After`` followed) are
:mod:`.delivery`'s, shared with the other streams.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from ..errors import ConfigurationError
from .delivery import DELIVERED, Attempt, Stream, line_object, retry_after_s

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = ["SentinelSink", "MAX_CALL_BYTES", "row", "check_target"]

log = logging.getLogger("keyguard.audit")

MAX_CALL_BYTES = 1_000_000  # Azure takes 1 MB per call; a little under, the array's brackets
_BATCH_LINES = 2_000
_TIMEOUT_S = 10
_RULE = re.compile(r"dcr-[0-9a-f]{32}")
_STREAM = re.compile(r"(Custom|Microsoft)-[A-Za-z0-9_]{1,100}")
_HINTS = {
    401: "check sentinel_identity (the token was refused)",
    403: "give Keyguard's identity the role 'Monitoring Metrics Publisher' on the data "
    "collection rule (it can take 30 minutes to apply)",
    404: "check sentinel_rule_id (the rule's immutable id, dcr-...) and sentinel_stream",
    413: "a batch was too large",
}


def check_target(endpoint: str, rule_id: str, stream: str) -> None:
    """Refuse a data collection endpoint, rule id or stream name that cannot be right,
    naming the setting (a careless operator's typo fails at start, not at the first post)."""
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ConfigurationError(
            "monitor.audit.sentinel_endpoint: use the data collection endpoint's https:// "
            "logs ingestion URL (https://NAME.REGION-1.ingest.monitor.azure.com)"
        )
    if not _RULE.fullmatch(rule_id):
        raise ConfigurationError(
            "monitor.audit.sentinel_rule_id: use the data collection rule's immutable id "
            "(dcr- and 32 hex digits, in the rule's JSON view)"
        )
    if not _STREAM.fullmatch(stream):
        raise ConfigurationError(
            "monitor.audit.sentinel_stream: use the rule's stream name, Custom-<table> "
            "(e.g. Custom-KeyguardAudit_CL)"
        )


def row(line: str) -> dict[str, Any]:
    """The stream's row for one audit line: the chain fields as columns, the line as is."""
    obj = line_object(line)
    created = obj.get("created")
    return {
        "TimeGenerated": created if isinstance(created, str) else None,
        "RecordType": obj.get("type"),
        "Chain": obj.get("chain") or obj.get("writer"),
        "Seq": obj.get("seq"),
        "Kind": obj.get("kind"),
        "Hash": obj.get("hash"),
        "PrevHash": obj.get("prev_hash"),
        "Line": line,
    }


class SentinelSink(Stream):
    receiver = "the Logs Ingestion endpoint"

    def __init__(
        self,
        endpoint: str,
        rule_id: str,
        stream: str,
        credential: TokenCredential,
        *,
        max_lines: int = 100_000,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        ca_file: str | None = None,
    ) -> None:
        check_target(endpoint, rule_id, stream)
        from azure.monitor.ingestion import LogsIngestionClient

        super().__init__(
            max_lines=max_lines,
            initial_s=initial_s,
            max_s=max_s,
            batch_lines=_BATCH_LINES,
            batch_bytes=MAX_CALL_BYTES,
            name="keyguard-audit-sentinel",
        )
        kwargs: dict[str, Any] = {"connection_verify": ca_file} if ca_file else {}
        self._credential = credential
        self._client = LogsIngestionClient(
            endpoint,
            credential,
            retry_total=0,  # retried by the stream, in order, with its back-off
            connection_timeout=_TIMEOUT_S,
            read_timeout=_TIMEOUT_S,
            logging_enable=False,
            **kwargs,
        )
        self._rule, self._stream = rule_id, stream
        self.start()

    def _cost(self, line: str) -> int:
        return len(orjson.dumps(row(line))) + 1

    def _send(self, batch: list[str]) -> Attempt:
        from azure.core.exceptions import AzureError, HttpResponseError

        body = gzip.compress(orjson.dumps([row(line) for line in batch]), compresslevel=6)
        try:
            self._client.upload(self._rule, self._stream, io.BytesIO(body))
            return DELIVERED
        except HttpResponseError as exc:
            if exc.response is None or exc.status_code is None:  # no token: see the message
                log.warning("audit: no token for the Logs Ingestion endpoint (%s); retrying",
                            _first_line(exc))  # fmt: skip
                return Attempt(False)
            status = exc.status_code
            hint = _HINTS.get(status, "retrying")
            log.warning("audit: the Logs Ingestion endpoint answered %d; %s", status, hint)
            retry_after = exc.response.headers.get("Retry-After")  # type: ignore[attr-defined]
            _release(exc.response)
            return Attempt(False, retry_after_s(retry_after, time.time()))
        except AzureError as exc:  # no connection, a timeout
            log.warning(
                "audit: the Logs Ingestion endpoint failed (%s); retrying", type(exc).__name__
            )
            return Attempt(False)

    def _stopped(self) -> None:
        self._client.close()
        close = getattr(self._credential, "close", None)
        if close is not None:
            close()


def _first_line(exc: BaseException) -> str:
    """An SDK error in one short line (its type and first line; never a response body)."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _release(response: Any) -> None:
    """Give a refused call's connection back (the SDK keeps an error's response open)."""
    close = getattr(response, "close", None) or getattr(
        getattr(response, "internal_response", None), "close", None
    )
    if close is not None:
        close()
