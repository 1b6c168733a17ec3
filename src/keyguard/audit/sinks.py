"""Where committed audit records are copied for a SIEM: JSON lines on stdout, or syslog
(RFC 3164, or RFC 5424 with the chain fields as structured data); the HEC stream is
:mod:`.hec`.

Each line is one record (``{"type": "record", "chain", "seq", "created", "kind", "data",
"prev_hash", "hash"}``), checkpoint (``{"type": "checkpoint", ...}``) or head set, in the same
shape as ``keyguard audit export``, so a SIEM's copy can be checked with ``keyguard audit
verify --file``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
from collections.abc import Sequence
from typing import Protocol

import orjson

from ..errors import ConfigurationError

__all__ = ["Sink", "StdoutSink", "SyslogSink", "open_sink"]


class Sink(Protocol):
    def write(self, lines: Sequence[str]) -> None: ...

    def close(self) -> None: ...


class StdoutSink:
    def write(self, lines: Sequence[str]) -> None:
        if lines:
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()

    def close(self) -> None:
        return None


class SyslogSink:
    """RFC 3164 messages through :class:`logging.handlers.SysLogHandler` (facility auth)."""

    def __init__(self, address: str, *, format: str = "rfc3164") -> None:
        self._rfc5424 = format == "rfc5424"
        target: str | tuple[str, int]
        host, sep, port = address.rpartition(":")
        if sep and port.isdigit() and not address.startswith("/"):
            target = (host, int(port))
        else:
            target = address
        try:
            self._handler = logging.handlers.SysLogHandler(
                address=target,
                facility=logging.handlers.SysLogHandler.LOG_AUTH,
                socktype=socket.SOCK_DGRAM,
            )
        except OSError as exc:
            raise ConfigurationError(
                f"monitor.audit.syslog_address: cannot open {address!r}: {exc.strerror}"
            ) from None
        self._handler.ident = "" if self._rfc5424 else "keyguard-audit: "

    def write(self, lines: Sequence[str]) -> None:
        for line in lines:
            message = rfc5424(line) if self._rfc5424 else line
            record = logging.LogRecord("keyguard.audit", logging.INFO, "", 0, message, None, None)
            self._handler.emit(record)

    def close(self) -> None:
        self._handler.close()


#: the structured data element's id: the example enterprise number of RFC 5612
SD_ID = "keyguard@32473"
_HOST = socket.gethostname()[:255] or "-"


def rfc5424(line: str) -> str:
    """An RFC 5424 message (after its ``<PRI>``) for an audit line: the chain fields as
    structured data, the line itself as the message::

        1 2026-12-03T08:00:00.000000Z host keyguard 4242 audit [keyguard@32473 type="record"
        chain="3f2a..." seq="812" hash="..." kind="request"] {"type":"record",...}
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = {}
    fields = {k: obj.get(k) for k in ("type", "chain", "seq", "hash", "kind", "writer")}
    params = " ".join(f'{k}="{_sd_escape(str(v))}"' for k, v in fields.items() if v is not None)
    created = obj.get("created")
    stamp = created if isinstance(created, str) and len(created) <= 32 else "-"
    data = f"[{SD_ID} {params}]" if params else "-"
    return f"1 {stamp} {_HOST} keyguard {os.getpid()} audit {data} {line}"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")[:256]


def open_sink(kind: str, address: str, syslog_format: str = "rfc3164") -> Sink | None:
    if kind == "stdout":
        return StdoutSink()
    if kind == "syslog":
        return SyslogSink(address, format=syslog_format)
    return None
