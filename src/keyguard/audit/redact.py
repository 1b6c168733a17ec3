"""Redact secrets from text before it is recorded, with the secret scanner's detectors.

Used on everything a client controls that may be recorded: user agents and client fingerprints
(always), prompts and completions (only when ``monitor.audit.record_content`` is on). A secret
becomes ``[REDACTED:<kind>]``; the scanner's detectors validate checksums, so ordinary text is
left alone. :func:`redact_short` caches results, since user agents repeat.
"""

from __future__ import annotations

import re
from typing import Any

from ..keys.admin_tokens import TOKEN_PATTERN, parse_token
from ..scan.detectors import DetectContext, detect
from ..scan.prefilter import may_hold_secret

__all__ = ["redact_text", "redact_short", "redact_json"]

_cache: dict[str, str] = {}
_HEX = re.compile(r"[0-9a-fA-F]{32,}")


def redact_text(text: str) -> str:
    """``text`` with every secret the scanner recognises, and every admin token, replaced by
    ``[REDACTED:<kind>]``."""
    spans = [(hit.start, hit.end, hit.kind) for hit in detect(text, DetectContext(text))]
    if "kga_" in text:
        spans += [
            (m.start(), m.end(), "admin_token")
            for m in TOKEN_PATTERN.finditer(text)
            if parse_token(m.group()) is not None
        ]
    if not spans:
        return text
    out, pos = [], 0
    for start, end, kind in sorted(spans):
        if start < pos:
            continue
        out.append(text[pos:start])
        out.append(f"[REDACTED:{kind}]")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def redact_short(text: str) -> str:
    """:func:`redact_text` for short, repetitive text (user agents), cached."""
    cached = _cache.get(text)
    if cached is not None:
        return cached
    # the gate the guardrails use: no detector of the scanner can fire on a text it closes
    # (an admin token and a 32-hex run are runs of 16+ credential characters: it stays open)
    clean = _HEX.sub("[REDACTED:hex]", redact_text(text)) if may_hold_secret(text) else text
    if len(_cache) > 4096:
        _cache.clear()
    _cache[text] = clean
    return clean


def redact_json(value: Any) -> Any:
    """Redact every string inside a JSON-like value."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    return value
