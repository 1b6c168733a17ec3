"""The gateway's logs: one record per line, JSON by default, never a secret.

Every record (application, access, security; the libraries' too, such as the Azure SDKs')
leaves through one of two formatters (the schema is in docs/logs.md):

* :class:`JsonFormatter`: one JSON object per line: ``ts``, ``level``, ``logger``, ``msg``,
  ``request_id`` (inside a request), ``exc`` (an exception, folded into one string), and for
  the access log its fields;
* :class:`TextFormatter`: ``TIME LEVEL LOGGER [REQUEST_ID] MESSAGE`` on one line, a
  multi-line message or traceback folded with `` | ``.

Both pass the finished line through :func:`redact`, which replaces anything shaped like a
credential (Azure keys, Keyguard keys, bearer tokens, JWTs) with ``[redacted]``: a message
that quotes one by mistake still does not leak it. ``log_format: auto`` picks text when
stderr is a terminal and JSON otherwise.
"""

from __future__ import annotations

import logging
import re
import time
from contextvars import ContextVar
from typing import IO, Any, Literal

import orjson
import re2

__all__ = [
    "AccessLine",
    "JsonFormatter",
    "TextFormatter",
    "LogFormat",
    "current_request_id",
    "formatter_for",
    "redact",
]

LogFormat = Literal["json", "text", "auto"]

#: the id of the request being handled (set by the proxy for each request's task)
current_request_id: ContextVar[str | None] = ContextVar("keyguard_request_id", default=None)

_SECRET = re.compile(
    r"[A-Za-z0-9]{52}JQQJ9[9DH][A-Za-z0-9]{26}"  # identifiable Azure key
    r"|(?<![0-9a-fA-F])[0-9a-fA-F]{32}(?![0-9a-fA-F])"  # legacy 32-hex Azure key
    r"|\bkg[ka]_[0-9A-Za-z_-]{20,}"  # Keyguard app and admin keys
    r"|\bsk-[A-Za-z0-9_-]{20,}"  # OpenAI keys
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # JWTs
    r"|(?i:(?<=bearer )[A-Za-z0-9._~+/=-]{16,})"  # bearer tokens
    r"|(?i:(?<=api-key': ')[^']{16,})|(?i:(?<=api-key: )\S{16,})"  # an api-key header
)
# Every match of _SECRET holds one of these (a superset, checked by the tests): one linear-time
# pass of RE2 over a line says whether the backtracking search, many times slower on a typical
# access-log line, has anything to find.
_MAY_HOLD = re2.compile(r"JQQJ9|[0-9a-fA-F]{32}|kg[ka]_|sk-|eyJ|(?i:bearer |api-key)")
#: the fields a record carries that are not extras (``logging.LogRecord``'s own)
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_FOLD = " | "


def redact(text: str) -> str:
    """``text`` with every credential-shaped run replaced by ``[redacted]``."""
    if _MAY_HOLD.search(text) is None:
        return text
    return _SECRET.sub("[redacted]", text)


def _fold(text: str) -> str:
    return _FOLD.join(line.rstrip() for line in text.splitlines() if line.strip())


_second: list[tuple[int, str]] = [(-1, "")]  # the last whole second formatted, and its text


def _utc(created: float) -> str:
    second = int(created)
    last = _second[0]  # one tuple, replaced whole: threads logging at once read a pair
    if second != last[0]:  # formatted once a second, not once a line
        last = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _second[0] = last
    return f"{last[1]}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)  # the access log's, given as its only extra
        if isinstance(fields, dict):  # one a request: its fields, nothing else of the record read
            entry: dict[str, Any] = {**_ACCESS_HEAD, **fields, **_ACCESS_HEAD}
            entry["ts"] = _utc(record.created)  # the four own fields first, then the fields
            entry["level"] = record.levelname.lower()
            entry["logger"] = record.name
            return redact(orjson.dumps(entry, default=str).decode())
        entry = {
            "ts": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or current_request_id.get()
        if rid is not None:
            entry.setdefault("request_id", rid)
        if record.exc_info:
            entry["exc"] = _fold(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = _fold(record.exc_text)
        for key, value in vars(record).items():  # extras given with ``extra={...}``
            if key not in _STANDARD and key not in entry and key != "fields":
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        return redact(orjson.dumps(entry, default=str).decode())


_ACCESS_HEAD = {"ts": "", "level": "", "logger": "", "msg": "request"}


class AccessLine:
    """An access log record's message: its fields' JSON, made only when a formatter reads it
    (the text format prints it; the JSON format writes the fields themselves)."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return orjson.dumps(self.fields).decode()


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER [REQUEST_ID] MESSAGE`` on one line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(getattr(record, "fields", None), dict):  # the access log: its JSON
            return redact(record.getMessage())
        line = super().format(record)
        rid = getattr(record, "request_id", None) or current_request_id.get()
        if rid is not None:
            head, _, rest = line.partition(f" {record.name} ")
            line = f"{head} {record.name} [{rid}] {rest}"
        return redact(_fold(line))


def formatter_for(fmt: LogFormat, stream: IO[str]) -> logging.Formatter:
    """The formatter ``log_format`` names; ``auto``: text on a terminal, JSON otherwise."""
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        fmt = "text" if callable(isatty) and isatty() else "json"
    return TextFormatter() if fmt == "text" else JsonFormatter()
