"""Audit settings (``monitor.audit`` in the config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AuditSettings"]


class AuditSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    # Records are written in batches at least this often: after a crash (kill -9) at most
    # about this long of records is missing; a graceful stop loses nothing.
    flush_interval_s: float = Field(default=0.2, gt=0, le=1)
    batch_size: int = Field(default=2000, ge=1)
    checkpoint_interval_s: float = Field(default=10, gt=0)
    max_queue: int = Field(default=500_000, ge=1000)  # beyond it records are dropped and counted
    # Prompts and completions are not recorded unless this is on; secrets are redacted first.
    record_content: bool = False
    max_content_chars: int = Field(default=20_000, ge=0)
    # A copy of every committed record and checkpoint as JSON lines, for a SIEM.
    sink: Literal["none", "stdout", "syslog"] = "none"
    syslog_address: str = "/dev/log"  # a socket path, or HOST:PORT (UDP)
