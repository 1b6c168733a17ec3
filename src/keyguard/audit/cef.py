"""ArcSight Common Event Format (CEF) for an audit line: what ``syslog_format: cef`` sends.

::

    CEF:0|Keyguard|Keyguard|<version>|<event class>|<name>|<severity>|<extensions>

The event class is the record's kind (``request``, ``admin``, ``security``, ``segment``) or
the line's type (``checkpoint``, ``heads``); the severity (0-10) follows a security event's
severity, a request's status (5xx: 5, refused: 3, else 1) or is 1. The extensions carry the
chain fields (``cs1`` chain, ``cn1`` seq, ``cs2`` hash, ``cs3`` prev hash, each with its
``csNLabel``), the request's who and what in CEF's own keys (``src``, ``suser``, ``request
ClientApplication``, ``outcome``, ``act``, ``cs4`` key id, ``cs5`` deployment, ``externalId``
request id, ``rt`` time) and ``msg``: the export's line itself, so the SIEM's copy verifies
after the one unescape below.

Escaping (CEF 25, "Character encoding"): in the header ``\\`` and ``|`` are escaped with a
backslash; in extension values ``\\`` and ``=`` are, and CR and LF become ``\\r`` and ``\\n``;
header fields never carry a line break (replaced by a space). So a hostile value in a record
(a user agent carrying ``|``, ``=``, ``key=value`` or CRLF and a second ``CEF:0|...``) stays
inside its own field. Pure functions.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .delivery import line_object

__all__ = ["cef", "escape_header", "escape_value", "unescape_value"]

try:
    _VERSION = version("keyguard")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0"

_SEVERITY = {"low": 3, "medium": 5, "high": 8, "critical": 10}
_LABELS = (("cs1", "chain"), ("cn1", "seq"), ("cs2", "hash"), ("cs3", "prevHash"))
_MAX_FIELD = 1023  # CEF's usual limit for a string extension (``msg`` excepted: the line)


def escape_header(value: str) -> str:
    """A header field: ``\\`` and ``|`` escaped, line breaks replaced by a space."""
    text = value.replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def escape_value(value: str) -> str:
    """An extension value: ``\\`` and ``=`` escaped, CR and LF as ``\\r`` and ``\\n``."""
    text = value.replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def unescape_value(value: str) -> str:
    """The inverse of :func:`escape_value` (what a SIEM's parser does)."""
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        out.append({"r": "\r", "n": "\n"}.get(nxt, nxt))
    return "".join(out)


def _severity(obj: dict[str, Any], data: dict[str, Any]) -> int:
    kind = obj.get("kind")
    if kind == "security":
        return _SEVERITY.get(str(data.get("severity")), 5)
    if kind == "admin":
        return 3
    if kind == "request":
        status = data.get("status")
        if isinstance(status, int) and status >= 500:
            return 5
        return 3 if isinstance(status, int) and status >= 400 else 1
    return 1


def _name(obj: dict[str, Any], data: dict[str, Any]) -> str:
    kind = obj.get("kind")
    if kind == "request":
        return f"{data.get('operation') or 'request'} {data.get('status', '')}".strip()
    if kind == "admin":
        return f"admin {data.get('action', '')}".strip()
    if kind == "security":
        return f"security {data.get('kind', '')}".strip()
    return f"audit {obj.get('type', 'line')}"


def _extensions(obj: dict[str, Any], data: dict[str, Any]) -> list[tuple[str, Any]]:
    chain = obj.get("chain") or obj.get("writer")
    fields: list[tuple[str, Any]] = []
    for (key, label), value in zip(
        _LABELS, (chain, obj.get("seq"), obj.get("hash"), obj.get("prev_hash")), strict=True
    ):
        if value is not None:
            fields += [(f"{key}Label", label), (key, value)]
    created = obj.get("created")
    fields.append(("rt", created))
    if obj.get("kind") == "request":
        fields += [
            ("externalId", data.get("request_id")),
            ("src", data.get("source")),
            ("suser", data.get("app")),
            ("requestClientApplication", data.get("user_agent")),
            ("outcome", data.get("status")),
            ("act", data.get("decision")),
            ("reason", data.get("reason")),
            ("cs4Label", "keyId"),
            ("cs4", data.get("key_id")),
            ("cs5Label", "deployment"),
            ("cs5", data.get("deployment")),
        ]
    elif obj.get("kind") == "admin":
        fields += [("suser", data.get("actor")), ("act", data.get("action"))]
        fields += [("cs4Label", "target"), ("cs4", data.get("target"))]
    elif obj.get("kind") == "security":
        fields += [("suser", data.get("app")), ("src", data.get("source"))]
        fields += [("cs4Label", "keyId"), ("cs4", data.get("key_id"))]
    return fields


def cef(line: str) -> str:
    """The CEF message for one audit line (the syslog header is the transport's)."""
    obj = line_object(line)
    raw = obj.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    event_class = str(obj.get("kind") or obj.get("type") or "line")[:63]
    header = [
        "CEF:0",
        "Keyguard",
        "Keyguard",
        escape_header(_VERSION),
        escape_header(event_class),
        escape_header(_name(obj, data)[:512]),
        str(_severity(obj, data)),
    ]
    ext = [
        f"{key}={escape_value(str(value)[:_MAX_FIELD])}"
        for key, value in _extensions(obj, data)
        if value is not None and value != ""
    ]
    ext.append(f"msg={escape_value(line)}")
    return "|".join(header) + "|" + " ".join(ext)
