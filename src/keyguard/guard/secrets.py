"""Secrets in a text: the scanner's detectors and decoders (``keyguard.scan``), reused as is.

The text is scanned as ``keyguard scan`` scans a file: plain, then its base64 blobs,
percent-encoded lines and JSON-escaped lines (two levels deep), then with string literals
split by concatenation rejoined. A hit in a decoded view is reported over the encoded span it
came from, so redacting the match removes every form of the value.
"""

from __future__ import annotations

from keyguard.guard.findings import Match
from keyguard.scan.concat import concatenation_views
from keyguard.scan.decoders import decoded_views
from keyguard.scan.detectors import PRIORITY, DetectContext, detect
from keyguard.scan.engine import MAX_DEPTH
from keyguard.scan.prefilter import may_hold_secret
from keyguard.scan.views import View

__all__ = ["secret_matches"]


def _detector(kind: str, encoding: str) -> str:
    return kind if encoding == "plain" else f"{kind}/{encoding}"


def _walk(view: View, ctx: DetectContext, depth: int, out: list[tuple[int, Match]]) -> None:
    for hit in detect(view.text, ctx, view.outer_prefix):
        start, end = view.to_original(hit.start, hit.end)
        out.append(
            (
                PRIORITY[hit.kind],
                Match("secret", hit.kind, _detector(hit.kind, view.encoding), start, end),
            )
        )
    if depth < MAX_DEPTH:
        for child in decoded_views(view):
            _walk(child, ctx, depth + 1, out)


def secret_matches(text: str, *, gated: bool = False) -> list[tuple[int, Match]]:
    """Every secret in ``text`` with its priority (lower is more specific); overlaps are left
    for the caller to resolve. A text no detector could fire on is not scanned
    (``keyguard.scan.prefilter``; ``gated``: the caller has checked it, as
    :func:`keyguard.guard.gate.gates` does)."""
    return _scan(text) if gated or may_hold_secret(text) else []


def _scan(text: str) -> list[tuple[int, Match]]:
    base = View(text)
    ctx = DetectContext(text)
    found: list[tuple[int, Match]] = []
    _walk(base, ctx, 0, found)
    for joined in concatenation_views(base):
        for hit in detect(joined.text, ctx):
            if any(hit.start < j < hit.end for j in joined.joins):
                start, end = joined.to_original(hit.start, hit.end)
                kind = hit.kind
                found.append(
                    (PRIORITY[kind], Match("secret", kind, f"{kind}/concatenation", start, end))
                )
    return found
