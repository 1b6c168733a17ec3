"""Scan one file's bytes: views, detectors, decoders, rejoining; findings with fingerprints.

``scan_bytes`` is the single entry point used by the file walker, the git history walker and
the staged-changes scanner. It is a pure function of the bytes, the path and the fingerprint
key, so it runs unchanged in worker processes.
"""

from __future__ import annotations

from keyguard.scan.concat import concatenation_views
from keyguard.scan.decoders import decoded_views
from keyguard.scan.detectors import DetectContext, detect
from keyguard.scan.findings import Finding, Hit, redact
from keyguard.scan.fingerprint import fingerprint
from keyguard.scan.hexcontext import is_hex_exempt_file
from keyguard.scan.views import LineIndex, View, notebook_view

__all__ = ["MAX_DEPTH", "scan_bytes", "scan_text"]

MAX_DEPTH = 2  # a blob inside a blob is decoded; deeper nesting is not


def _scan_view(view: View, ctx: DetectContext, depth: int, out: list[tuple[Hit, View]]) -> None:
    for hit in detect(view.text, ctx, view.outer_prefix):
        out.append((hit, view))
    if depth < MAX_DEPTH:
        for child in decoded_views(view):
            _scan_view(child, ctx, depth + 1, out)


def _spans_join(hit: Hit, view: View) -> bool:
    return any(hit.start < j < hit.end for j in view.joins)


def scan_text(raw: str, path: str, key: bytes) -> list[Finding]:
    """Findings in ``raw`` (the file decoded as latin-1); ``path`` is the reported path."""
    base = notebook_view(raw) if path.endswith(".ipynb") else View(raw)
    ctx = DetectContext(raw, hex_enabled=not is_hex_exempt_file(path))
    pairs: list[tuple[Hit, View]] = []
    _scan_view(base, ctx, 0, pairs)
    for joined in concatenation_views(base):
        for hit in detect(joined.text, ctx):
            if _spans_join(hit, joined):
                pairs.append((hit, joined))
    if not pairs:
        return []
    lines = LineIndex(raw)
    findings: list[Finding] = []
    seen: set[tuple[str, int]] = set()
    for hit, view in pairs:
        start, end = view.to_original(hit.start, hit.end)
        line, end_line = lines.line(start), lines.line(max(end - 1, start))
        fp = fingerprint(hit.secret, key)
        if (fp, line) in seen:
            continue
        seen.add((fp, line))
        findings.append(
            Finding(
                file=path,
                line=line,
                end_line=end_line,
                kind=hit.kind,
                confidence=hit.confidence,
                fingerprint=fp,
                preview=redact(hit.secret),
                encoding=view.encoding,
                detail=hit.detail,
            )
        )
    findings.sort(key=lambda f: (f.line, f.end_line, f.kind))
    return findings


def scan_bytes(data: bytes, path: str, key: bytes) -> list[Finding]:
    return scan_text(data.decode("latin-1"), path, key)
