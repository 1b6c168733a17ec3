"""Where committed audit records are copied for a SIEM: JSON lines on stdout, or syslog
(RFC 3164, RFC 5424 with the chain fields as structured data, or CEF: :mod:`.cef`); the HEC
and Sentinel streams are :mod:`.hec` and :mod:`.sentinel`.

Each line is one record (``{"type": "record", "chain", "seq", "created", "kind", "data",
"prev_hash", "hash"}``), checkpoint (``{"type": "checkpoint", ...}``) or head set, in the same
shape as ``keyguard audit export``, so a SIEM's copy can be checked with ``keyguard audit
verify --file``.

Syslog is a :class:`~.delivery.Stream` (bounded buffer, a sender thread, back-off): a syslog
daemon that is down or a socket that refuses is retried in order, never waited for by the
writer. The transport is a local socket (``/dev/log``, datagrams), UDP (``HOST:PORT``, one
datagram a message, at most :data:`MAX_DATAGRAM` bytes: a longer line is refused and counted),
or TCP (``syslog_transport: tcp``, RFC 6587 octet counting: ``<length> <message>``, one
connection kept, checked before each batch and opened again when the receiver closed it; a
batch cut by a failure is sent again whole, so the receiver may see a line twice). TCP syslog
has no acknowledgement: a batch the kernel took just before the receiver died is lost to it
(the store keeps it); HEC and Sentinel acknowledge every batch.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
from collections.abc import Sequence
from typing import Literal, Protocol

import orjson

from ..errors import ConfigurationError
from .cef import cef
from .delivery import DELIVERED, Attempt, Stream

__all__ = ["Sink", "StdoutSink", "SyslogSink", "open_sink", "rfc5424", "syslog_message"]

log = logging.getLogger("keyguard.audit")

Format = Literal["rfc3164", "rfc5424", "cef"]
Transport = Literal["udp", "tcp"]
MAX_DATAGRAM = 65_000  # a UDP datagram's payload, a little under the 65,507 IPv4 allows
MAX_TCP_BATCH = 4_000_000
_PRI = "<38>"  # facility auth (4) * 8 + severity info (6)
_TIMEOUT_S = 10.0


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


def syslog_message(line: str, format: Format) -> bytes:
    """The whole syslog message for an audit line, ``<PRI>`` included."""
    if format == "rfc5424":
        return (_PRI + rfc5424(line)).encode()
    if format == "cef":
        return (_PRI + _header(line) + " - " + cef(line)).encode()
    return (_PRI + "keyguard-audit: " + line).encode()


class SyslogSink(Stream):
    """Syslog over a local socket, UDP or TCP (octet counting), retried with back-off."""

    receiver = "the syslog receiver"

    def __init__(
        self,
        address: str,
        *,
        format: Format = "rfc3164",
        transport: Transport = "udp",
        max_lines: int = 100_000,
        initial_s: float = 0.5,
        max_s: float = 30.0,
    ) -> None:
        self._format = format
        self._target: str | tuple[str, int]
        host, sep, port = address.rpartition(":")
        if sep and port.isdigit() and not address.startswith("/"):
            self._target = (host.strip("[]"), int(port))
        elif transport == "tcp":
            raise ConfigurationError(
                "monitor.audit.syslog_address: syslog_transport tcp needs HOST:PORT"
            )
        else:
            self._target = address
        self._tcp = transport == "tcp"
        self._sock: socket.socket | None = None
        try:
            if not self._tcp:
                self._sock = self._datagram_socket()
        except OSError as exc:
            raise ConfigurationError(
                f"monitor.audit.syslog_address: cannot open {address!r}: {exc.strerror}"
            ) from None
        super().__init__(
            max_lines=max_lines,
            initial_s=initial_s,
            max_s=max_s,
            batch_lines=500,
            batch_bytes=MAX_TCP_BATCH if self._tcp else MAX_DATAGRAM,
            name="keyguard-audit-syslog",
        )
        self.start()

    def _datagram_socket(self) -> socket.socket:
        if isinstance(self._target, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        else:
            family = socket.getaddrinfo(*self._target, type=socket.SOCK_DGRAM)[0][0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.settimeout(_TIMEOUT_S)
        return sock

    def _cost(self, line: str) -> int:
        return len(syslog_message(line, self._format)) + 12  # the octet count and its space

    def _send(self, batch: list[str]) -> Attempt:
        messages = [syslog_message(line, self._format) for line in batch]
        try:
            if self._tcp:
                if self._sock is not None and not _open(self._sock):
                    self._drop_socket()  # the receiver closed it: a new one, not a lost batch
                if self._sock is None:
                    assert isinstance(self._target, tuple)  # tcp takes HOST:PORT only
                    self._sock = socket.create_connection(self._target, timeout=_TIMEOUT_S)
                self._sock.sendall(b"".join(b"%d %s" % (len(m), m) for m in messages))
            else:
                if self._sock is None:
                    self._sock = self._datagram_socket()
                for message in messages:
                    self._sock.sendto(message, self._target)
            return DELIVERED
        except OSError as exc:
            log.warning("audit: syslog to %s failed (%s); retrying", self._where(), exc.strerror
                        or type(exc).__name__)  # fmt: skip
            self._drop_socket()
            return Attempt(False)

    def _where(self) -> str:
        if isinstance(self._target, str):
            return self._target
        return f"{self._target[0]}:{self._target[1]}"

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _stopped(self) -> None:
        self._drop_socket()


def _open(sock: socket.socket) -> bool:
    """Whether the receiver still holds a TCP connection open (it sends nothing, so anything
    readable is its close or a reset)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except OSError:
        return False


#: the structured data element's id: the example enterprise number of RFC 5612
SD_ID = "keyguard@32473"
_HOST = socket.gethostname()[:255] or "-"


def _header(line: str, obj: dict[str, object] | None = None) -> str:
    """RFC 5424's header after ``<PRI>``: version, time, host, app, pid, message id."""
    if obj is None:
        obj = _parsed(line)
    created = obj.get("created")
    stamp = (
        created if isinstance(created, str) and len(created) <= 32 and " " not in created else "-"
    )
    return f"1 {stamp} {_HOST} keyguard {os.getpid()} audit"


def _parsed(line: str) -> dict[str, object]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def rfc5424(line: str) -> str:
    """An RFC 5424 message (after its ``<PRI>``) for an audit line: the chain fields as
    structured data, the line itself as the message::

        1 2026-12-03T08:00:00.000000Z host keyguard 4242 audit [keyguard@32473 type="record"
        chain="3f2a..." seq="812" hash="..." kind="request"] {"type":"record",...}
    """
    obj = _parsed(line)
    fields = {k: obj.get(k) for k in ("type", "chain", "seq", "hash", "kind", "writer")}
    params = " ".join(f'{k}="{_sd_escape(str(v))}"' for k, v in fields.items() if v is not None)
    data = f"[{SD_ID} {params}]" if params else "-"
    return f"{_header(line, obj)} {data} {line}"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")[:256]


def open_sink(
    kind: str,
    address: str,
    syslog_format: Format = "rfc3164",
    *,
    transport: Transport = "udp",
    max_lines: int = 100_000,
) -> Sink | None:
    if kind == "stdout":
        return StdoutSink()
    if kind == "syslog":
        return SyslogSink(address, format=syslog_format, transport=transport, max_lines=max_lines)
    return None
