"""Decoders: base64 blobs, URL-encoding and JSON escapes, each giving child views to scan.

A decoded view maps as a whole to the encoded span it came from (``View.fixed``). Blobs are
decoded only when the result is mostly printable text, which is what an encoded key, header
or config fragment looks like and what random binary data is not.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from urllib.parse import unquote

from keyguard.scan.lines import line_start
from keyguard.scan.masks import text_base64_runs
from keyguard.scan.views import View

__all__ = ["base64_views", "decoded_views", "json_escape_views", "url_views"]

_PCT = re.compile(r"%[0-9A-Fa-f]{2}")
_JSON_ESC = re.compile(r'\\u[0-9A-Fa-f]{4}|\\["\\/]')
_JSON_REPL = re.compile(r'\\u([0-9A-Fa-f]{4})|\\(["\\/])')
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n\r"


def _line_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    ls = text.rfind("\n", 0, start) + 1
    le = text.find("\n", end)
    return ls, len(text) if le == -1 else le


def _decode_b64(run: str) -> bytes | None:
    body = run.rstrip("=")
    if len(body) % 4 == 1:
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            if "+" in body or "/" in body:
                return None
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _mostly_printable(data: bytes) -> bool:
    if len(data) < 24:
        return False
    bad = len(data.translate(None, _PRINTABLE))
    return bad * 20 <= len(data)


def base64_views(view: View) -> Iterator[View]:
    """Child views for printable base64 / base64url blobs of 40+ characters."""
    text = view.text
    for start, end in text_base64_runs(text):
        run = text[start:end]
        # Cheap reject: identifiers and hex digests rarely mix all three classes.
        if run.isalpha() or run.isdigit() or run.islower() or run.isupper():
            continue
        data = _decode_b64(run)
        if data is None or not _mostly_printable(data):
            continue
        ls, _ = line_start(text, start)
        yield View(
            data.decode("latin-1"),
            view.child_encoding("base64"),
            parent=view,
            fixed=(start, end),
            outer_prefix=text[ls:start],
        )


def url_views(view: View) -> Iterator[View]:
    """Child views for lines that contain percent-escapes, unquoted."""
    text = view.text
    if "%" not in text:
        return
    done = -1
    for m in _PCT.finditer(text):
        if m.start() < done:
            continue
        ls, le = _line_bounds(text, m.start(), m.end())
        done = le
        line = text[ls:le]
        decoded = unquote(line, encoding="latin-1")
        if decoded != line:
            yield View(decoded, view.child_encoding("url"), parent=view, fixed=(ls, le))


def json_escape_views(view: View) -> Iterator[View]:
    """Child views for lines with JSON string escapes (``\\uXXXX``, ``\\"``), unescaped."""
    text = view.text
    if "\\" not in text:
        return
    done = -1
    for m in _JSON_ESC.finditer(text):
        if m.start() < done:
            continue
        ls, le = _line_bounds(text, m.start(), m.end())
        done = le
        line = text[ls:le]
        decoded = _JSON_REPL.sub(
            lambda g: chr(int(g.group(1), 16)) if g.group(1) else g.group(2), line
        )
        if decoded != line:
            yield View(decoded, view.child_encoding("json-escape"), parent=view, fixed=(ls, le))


def decoded_views(view: View) -> Iterator[View]:
    yield from base64_views(view)
    yield from url_views(view)
    yield from json_escape_views(view)
