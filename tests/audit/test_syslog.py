"""Syslog for a SIEM: CEF whose escaping keeps a hostile value in its own field (a user agent
carrying ``|``, ``=``, a forged ``key=value`` or CRLF and a second CEF header forges nothing),
the chain fields and the line as extensions (the copy verifies); TCP with RFC 6587 octet
counting, retried with back-off while the receiver is down and reconnected when it closes; a
syslog socket that is not there yet is retried, not waited for."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.audit.cef import cef, escape_header, escape_value, unescape_value
from keyguard.audit.chain import canonical
from keyguard.audit.export import verify_lines
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.sinks import SyslogSink, open_sink
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.errors import ConfigurationError
from tests.support.settings import free_port

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
HOSTILE_UA = "evil|x=1 cs1=forged\\\r\nCEF:0|Evil|Evil|1|x|y|10|src=6.6.6.6 suser=root =\\"


def parse_cef(message: str) -> tuple[list[str], dict[str, str]]:
    """A strict reader, as a SIEM's: seven header fields split on unescaped ``|``, then
    extensions keyed at every unescaped ``=`` (values unescaped)."""
    text = message[message.index("CEF:") :]
    header: list[str] = []
    field, i = "", 0
    while len(header) < 7:
        ch = text[i]
        if ch == "\\":
            field += text[i + 1]
            i += 2
            continue
        if ch == "|":
            header.append(field)
            field = ""
        else:
            field += ch
        i += 1
    ext = text[i:]
    marks, i = [], 0
    while i < len(ext):
        if ext[i] == "\\":
            i += 2
            continue
        if ext[i] == "=":
            marks.append(i)
        i += 1
    found: dict[str, str] = {}
    keys = []
    for mark in marks:
        start = ext.rfind(" ", 0, mark) + 1
        keys.append((start, mark))
    for n, (start, mark) in enumerate(keys):
        end = keys[n + 1][0] - 1 if n + 1 < len(keys) else len(ext)
        key = ext[start:mark]
        assert re.fullmatch(r"[A-Za-z0-9]+", key), key
        assert key not in found, f"{key} twice"
        found[key] = unescape_value(ext[mark + 1 : end])
    return header, found


def _record(**data: Any) -> str:
    return canonical({"type": "record", "chain": "c0ffee", "seq": 42, "kind": "request",
                      "created": "2026-12-03T08:00:00.000000Z", "prev_hash": "a" * 64,
                      "hash": "b" * 64, "data": data})  # fmt: skip


def test_a_hostile_user_agent_forges_no_field() -> None:
    line = _record(request_id="r1", source="10.0.0.1", app="billing", status=200,
                   user_agent=HOSTILE_UA, decision="allow")  # fmt: skip
    message = cef(line)
    assert "\r" not in message and "\n" not in message
    assert message.startswith("CEF:0|Keyguard|Keyguard|")  # the forged header is in values
    header, ext = parse_cef(message)
    assert header[:3] == ["CEF:0", "Keyguard", "Keyguard"]
    assert header[4:] == ["request", "request 200", "1"]
    assert ext["requestClientApplication"] == HOSTILE_UA
    assert ext["src"] == "10.0.0.1" and ext["suser"] == "billing"  # not 6.6.6.6, not root
    assert ext["cs1"] == "c0ffee" and ext["cs1Label"] == "chain"  # not "forged"
    assert ext["cn1"] == "42" and ext["cs2"] == "b" * 64 and ext["cs3"] == "a" * 64
    assert ext["msg"] == line  # the line, byte for byte: the copy verifies
    assert "x" not in ext


def test_hostile_values_in_the_header_stay_in_their_field() -> None:
    line = canonical({"type": "record", "chain": "c", "seq": 1, "kind": "security",
                      "data": {"kind": "a|b\\c\r\nd", "severity": "critical|0"}})  # fmt: skip
    header, ext = parse_cef(cef(line))
    assert len(header) == 7 and header[5] == "security a|b\\c d" and header[6] == "5"
    assert escape_header("a|b\\") == "a\\|b\\\\" and escape_value("k=v\\\n") == "k\\=v\\\\\\n"
    assert unescape_value(escape_value(HOSTILE_UA)) == HOSTILE_UA


class Receiver:
    """A TCP syslog receiver reading RFC 6587 octet-counted frames."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                count = await reader.readuntil(b" ")
                self.messages.append((await reader.readexactly(int(count))).decode())
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    port = free_port()
    yield Receiver(), port


async def _until(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


async def test_tcp_octet_counted_cef_retried_until_the_receiver_listens_and_verifies(
    engine: AsyncEngine, receiver: tuple[Receiver, int]
) -> None:
    found, port = receiver
    sink = open_sink("syslog", f"127.0.0.1:{port}", "cef", transport="tcp", max_lines=10_000)
    assert isinstance(sink, SyslogSink)
    sink._initial, sink._max_s = 0.01, 0.05  # fast back-off for the test
    writer = AuditWriter(AuditStore(engine), AuditSettings(), signer=SIGNER, sink=sink)
    for i in range(700):
        writer.append("request", {"i": i, "status": 200, "user_agent": HOSTILE_UA})
    await writer.tick()
    await _until(lambda: sink.failures >= 2)  # nothing listens yet: retried, not waited for
    assert sink.waiting > 0 and sink.lag() > 0 and sink.losses == 0
    server = await asyncio.start_server(found.handle, "127.0.0.1", port)
    try:
        # everything sent and read by the receiver (what sits unread in its socket when it
        # drops the connection is lost: syslog over TCP has no acknowledgements)
        await _until(lambda: sink.waiting == 0 and len(found.messages) == sink.sent)
        first = len(found.messages)
        found.writers[0].close()  # the receiver drops the connection: the next batch reconnects
        await found.writers[0].wait_closed()
        for i in range(10):
            writer.append("request", {"i": i})
        await writer.close()  # its seal (a signed head set) is the last line sent

        def sealed() -> bool:  # the sink sends from its own thread: wait for the last line
            if len(found.messages) <= first + 10:
                return False
            return (
                verify_lines([parse_cef(m)[1]["msg"] for m in found.messages], CHECK).head_sets > 0
            )

        await _until(sealed)
    finally:
        server.close()
        await server.wait_closed()
    assert found.connections == 2 and sink.losses == 0
    assert all(m.startswith("<38>1 ") and " audit - CEF:0|Keyguard|" in m for m in found.messages)
    lines = [parse_cef(m)[1]["msg"] for m in found.messages]
    report = verify_lines(lines, CHECK)
    assert report.ok and report.records == 712 and report.head_sets == 1, report.problems


async def test_a_local_syslog_socket_not_there_yet_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    sink = SyslogSink(str(path), format="rfc5424", initial_s=0.01, max_s=0.05)
    line = _record(status=200)
    await asyncio.to_thread(sink.write, [line])
    await _until(lambda: sink.failures >= 2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(20)
        message = (await asyncio.to_thread(server.recv, 65_536)).decode()
        await asyncio.to_thread(sink.close)
    assert message.startswith("<38>1 2026-12-03T08:00:00.000000Z ") and message.endswith(line)
    assert sink.sent == 1 and sink.waiting == 0


def test_a_udp_line_over_one_datagram_is_refused_alone_and_counted() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(20)
        sink = SyslogSink(f"127.0.0.1:{server.getsockname()[1]}", format="cef")
        try:
            sink.write([_record(user_agent="u" * 70_000), _record(status=503)])
            message = server.recv(65_536).decode()
        finally:
            sink.close()
    assert sink.rejected == 1 and "|5|" in message  # the second line's severity: a 5xx


def test_tcp_needs_host_and_port() -> None:
    with pytest.raises(ConfigurationError, match="monitor.audit.syslog_address: .* HOST:PORT"):
        SyslogSink("/dev/log", transport="tcp")
