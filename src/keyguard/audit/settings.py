"""Audit settings (``monitor.audit`` in the config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..upstream.settings import AzureIdentityRef
from .archive_settings import ArchiveSettings

__all__ = ["AuditSettings"]


class AuditSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    # Records are written in batches at least this often, each batch with its signed
    # checkpoint: after a crash (kill -9) at most about this long of records is missing; a
    # graceful stop loses nothing.
    flush_interval_s: float = Field(default=0.2, gt=0, le=1)
    batch_size: int = Field(default=2000, ge=1)
    # "batch": a request's record is written with the next batch (every flush_interval_s), after
    # its answer was sent: a crash loses up to that long of records. "before_answer": the
    # answer waits until its record is committed (requests waiting together share one
    # transaction); a streamed answer is recorded before its stream ends. A record that
    # cannot be committed within durable_timeout_s turns a non-streamed answer into a 503.
    durability: Literal["batch", "before_answer"] = "batch"
    durable_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # How often each writer signs a head set (every chain's newest checkpoint, :mod:`.heads`)
    # and sends it with its own newest checkpoint to the anchor (and the longest stretch of
    # newest records whose deletion, together with their checkpoints, the anchor cannot show).
    checkpoint_interval_s: float = Field(default=10, gt=0)
    # A writer closes its chain and starts a new one this often, so that a long-running
    # gateway's records fall into closed chains that `keyguard audit archive` can move out.
    chain_max_age_s: float = Field(default=86_400, ge=60)
    # Records waiting to be written, at most (a store outage or a slow store fills it).
    max_queue: int = Field(default=500_000, ge=1000)
    # When the queue is 90% full: "refuse" answers new requests 503 (Retry-After) until it
    # drains, so nothing is served unaudited; "serve_unaudited" keeps serving, raises a
    # critical security event, and drops (and counts) the records that do not fit.
    on_full: Literal["refuse", "serve_unaudited"] = "refuse"
    # A record whose JSON is longer is refused alone (replaced by a short record saying so).
    max_record_bytes: int = Field(default=1_048_576, ge=4096)
    # Prompts and completions are not recorded unless this is on; secrets are redacted first.
    record_content: bool = False
    max_content_chars: int = Field(default=20_000, ge=0)
    # A copy of every committed record and checkpoint as JSON lines, for a SIEM.
    sink: Literal["none", "stdout", "syslog", "hec", "sentinel"] = "none"
    syslog_address: str = "/dev/log"  # a socket path, or HOST:PORT
    # how HOST:PORT is reached: udp (one datagram a message) or tcp (RFC 6587 octet counting)
    syslog_transport: Literal["udp", "tcp"] = "udp"
    # rfc3164: "keyguard-audit: <JSON line>"; rfc5424: the chain fields as structured data;
    # cef: ArcSight CEF, the chain fields and the line as extensions (:mod:`.cef`)
    syslog_format: Literal["rfc3164", "rfc5424", "cef"] = "rfc3164"
    # sink "syslog" and "sentinel": lines waiting for the receiver, at most (then the oldest
    # are dropped, counted and reported as a security event)
    sink_max_lines: int = Field(default=100_000, ge=1000)
    # sink "sentinel": Microsoft Sentinel through the Logs Ingestion API (:mod:`.sentinel`):
    # the data collection endpoint's logs ingestion URL, the rule's immutable id and stream,
    # and the Entra identity Keyguard posts with (it needs Monitoring Metrics Publisher)
    sentinel_endpoint: str | None = None
    sentinel_rule_id: str | None = None
    sentinel_stream: str = "Custom-KeyguardAudit_CL"
    sentinel_identity: AzureIdentityRef = AzureIdentityRef()
    # sink "hec": JSON over HTTPS to a Splunk HEC-compatible endpoint, retried with back-off
    # (:mod:`.hec`); the token is the vault secret of this name.
    hec_url: str | None = None
    hec_token_secret: str = "audit/hec-token"
    hec_max_lines: int = Field(default=100_000, ge=1000)
    # A file outside the store where checkpoints are appended (one JSON line each), so that
    # deleting the newest records together with their checkpoints is detected
    # (keyguard audit verify reads it). Best on another disk or host, or append-only.
    anchor_file: str | None = None
    # Retention: chains older than archive.older_than moved out of the store by the gateway
    # (:mod:`.archive_settings`).
    archive: ArchiveSettings = ArchiveSettings()
