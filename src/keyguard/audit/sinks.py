"""Where committed audit records are copied for a SIEM: JSON lines on stdout, or syslog.

Each line is one record (``{"type": "record", "seq", "created", "kind", "data", "prev_hash",
"hash"}``) or checkpoint (``{"type": "checkpoint", ...}``), in the same shape as
``keyguard audit export``, so a SIEM's copy can be checked with ``keyguard audit verify --file``.
"""

from __future__ import annotations

import logging
import logging.handlers
import socket
import sys
from collections.abc import Sequence
from typing import Protocol

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

    def __init__(self, address: str) -> None:
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
        self._handler.ident = "keyguard-audit: "

    def write(self, lines: Sequence[str]) -> None:
        for line in lines:
            record = logging.LogRecord("keyguard.audit", logging.INFO, "", 0, line, None, None)
            self._handler.emit(record)

    def close(self) -> None:
        self._handler.close()


def open_sink(kind: str, address: str) -> Sink | None:
    if kind == "stdout":
        return StdoutSink()
    if kind == "syslog":
        return SyslogSink(address)
    return None
