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

__all__ = ["redact_text", "redact_short", "redact_json"]

_cache: dict[str, str] = {}
_HEX = re.compile(r"[0-9a-fA-F]{32,}")
# the scanner's literal anchors (docs/scanner.md): a text without any, and without a 32-hex run,
# holds nothing the detectors would find
_ANCHORS = (
    "JQQJ", "kgk_", "kga_", "T3BlbkFJ", "~", "AccountKey", "SharedAccessKey", "sig=", "+ASt",
    "eyJ", "earer", "EARER", "ACDb", "+ASb", "+AEh", "+ARm",
)  # fmt: skip


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


def _maybe_secret(text: str) -> bool:
    if any(a in text for a in _ANCHORS):
        return True
    run = 0
    for ch in text:  # a 32-hex run (legacy Azure key) needs the full detector
        run = run + 1 if ch in "0123456789abcdefABCDEF" else 0
        if run >= 32:
            return True
    return False


def redact_short(text: str) -> str:
    """:func:`redact_text` for short, repetitive text (user agents), cached."""
    cached = _cache.get(text)
    if cached is not None:
        return cached
    clean = _HEX.sub("[REDACTED:hex]", redact_text(text)) if _maybe_secret(text) else text
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
