"""One record per line, in one schema, with the request id, and never a secret."""

from __future__ import annotations

import io
import logging
import sys

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyguard.core.logs import (
    _SECRET,
    AccessLine,
    JsonFormatter,
    TextFormatter,
    current_request_id,
    formatter_for,
    redact,
)

AZURE_KEY = "A" * 52 + "JQQJ99" + "B" * 26
SECRETS = [
    AZURE_KEY,
    "0123456789abcdef0123456789abcdef",
    "kgk_" + "x" * 50,
    "sk-" + "y" * 30,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl",
]


def _record(
    msg: str, *args: object, name: str = "azure.core", **extra: object
) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": name, "levelno": logging.INFO, "levelname": "INFO", "msg": msg, "args": args}
    )
    record.__dict__.update(extra)
    return record


def test_a_multi_line_sdk_record_is_one_json_line_in_the_schema() -> None:
    sdk = "Request URL: 'https://x.openai.azure.com/'\nRequest method: 'POST'\nRequest headers:"
    line = JsonFormatter().format(_record(sdk))
    assert "\n" not in line
    entry = orjson.loads(line)
    assert set(entry) == {"ts", "level", "logger", "msg"}
    assert entry["level"] == "info" and entry["logger"] == "azure.core"
    assert entry["msg"] == sdk and entry["ts"].endswith("Z")


def test_a_multi_line_record_is_one_text_line() -> None:
    line = TextFormatter().format(_record("first\nsecond\n\nthird"))
    assert "\n" not in line and line.endswith("first | second | third")


def test_an_exception_is_folded_into_the_record() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert "\n" not in line and "ValueError: boom" in line


def test_the_request_id_of_the_request_being_handled_is_in_every_line() -> None:
    token = current_request_id.set("4f2a9c0d11223344")
    try:
        entry = orjson.loads(JsonFormatter().format(_record("x", name="keyguard.proxy")))
        text = TextFormatter().format(_record("x", name="keyguard.proxy"))
    finally:
        current_request_id.reset(token)
    assert entry["request_id"] == "4f2a9c0d11223344"
    assert "keyguard.proxy [4f2a9c0d11223344] x" in text
    assert "request_id" not in orjson.loads(JsonFormatter().format(_record("x")))


def test_the_access_log_shares_the_schema() -> None:
    fields = {"ts": 1.0, "request_id": "ab", "status": 200, "key_id": "k1"}
    record = _record(orjson.dumps(fields).decode(), name="keyguard.access", fields=fields)
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["msg"] == "request" and entry["logger"] == "keyguard.access"
    assert entry["status"] == 200 and entry["request_id"] == "ab"
    assert isinstance(entry["ts"], str)
    assert orjson.loads(TextFormatter().format(record)) == fields


def test_an_access_line_is_written_once_per_format_and_still_redacted() -> None:
    """The proxy gives the access log its fields and a message made only when read: JSON
    writes the fields, text prints their JSON; a credential-shaped value (a method is the
    caller's) is redacted in both."""
    canary = "kgk_" + "C4nary0" * 5
    fields = {"ts": 1.0, "request_id": "ab", "method": canary, "status": 401}
    record = _record(AccessLine(fields), name="keyguard.access", fields=fields)  # type: ignore[arg-type]
    json_line, text_line = JsonFormatter().format(record), TextFormatter().format(record)
    assert canary not in json_line and canary not in text_line
    assert orjson.loads(json_line)["method"] == orjson.loads(text_line)["method"] == "[redacted]"
    assert orjson.loads(json_line)["status"] == orjson.loads(text_line)["status"] == 401


@pytest.mark.parametrize("secret", SECRETS)
def test_a_secret_quoted_by_mistake_is_redacted(secret: str) -> None:
    hostile = [
        _record("key %s refused", secret),
        _record("headers: {'api-key': '%s'}", secret),
        _record("Authorization: Bearer %s", secret),
    ]
    for record in hostile:
        for formatter in (JsonFormatter(), TextFormatter()):
            line = formatter.format(record)
            assert secret not in line and "[redacted]" in line
    line = JsonFormatter().format(_record("x", detail=f"value={secret}"))  # an extra field
    assert secret not in line and "[redacted]" in line


def test_redaction_leaves_ids_and_fingerprints() -> None:
    text = "request 4f2a9c0d11223344 key 8XkWq2 fingerprint " + "a" * 64
    assert redact(text) == text


_PIECES = st.sampled_from(
    [*SECRETS, "Bearer ", "bearer ", "API-KEY: ", "api-key': '", "0123456789abcdef", "JQQJ9",
     "kgk_", "kga_", "sk-", "eyJ", " ", "\"", "'", "=", ".", "_", "-", "/", "x" * 20, "F" * 16]
)  # fmt: skip


@given(st.lists(st.one_of(_PIECES, st.text(max_size=12)), max_size=12))
def test_the_quick_pass_never_skips_a_line_the_full_search_would_change(parts: list[str]) -> None:
    text = "".join(parts)
    assert redact(text) == _SECRET.sub("[redacted]", text)


@pytest.mark.parametrize(("tty", "expected"), [(True, TextFormatter), (False, JsonFormatter)])
def test_auto_is_text_on_a_terminal_only(tty: bool, expected: type) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    assert type(formatter_for("auto", Stream())) is expected
    assert type(formatter_for("json", Stream())) is JsonFormatter
    assert type(formatter_for("text", Stream())) is TextFormatter


def test_each_line_carries_its_own_time_across_seconds() -> None:
    """The date and time of a second are formatted once and reused within that second: a
    line must still carry its own second and milliseconds, in and out of order."""
    fields = {"ts": 1.0, "request_id": "ab", "status": 200}
    for created, shown in [
        (1764893520.9996, "2025-12-05T00:12:00.999Z"),
        (1764893521.0004, "2025-12-05T00:12:01.000Z"),
        (1764893521.5, "2025-12-05T00:12:01.500Z"),
        (1764893520.25, "2025-12-05T00:12:00.250Z"),
        (1767225600.0, "2026-01-01T00:00:00.000Z"),
    ]:
        record = _record(AccessLine(fields), name="keyguard.access", fields=fields)  # type: ignore[arg-type]
        record.created = created
        plain = _record("hello")
        plain.created = created
        assert orjson.loads(JsonFormatter().format(record))["ts"] == shown
        assert orjson.loads(JsonFormatter().format(plain))["ts"] == shown
