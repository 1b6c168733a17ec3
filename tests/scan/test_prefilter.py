"""The secret pre-filter: it may open for clean text, it must never close over a secret.

Held to both labelled corpora: every text in which the detectors find a secret, and the lines
around each secret on their own (so a match elsewhere cannot hide a gap), open the gate.
Hostile cases: values whose detectors accept short values (database URL and connection-string
passwords, ``Basic`` credentials), values hidden by encoding (percent, JSON escapes, base64,
concatenation), and every plain prose text closing it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyguard.guard.engine import GuardEngine
from keyguard.guard.extract import request_slots
from keyguard.guard.normalize import prepare
from keyguard.guard.secrets import _scan, secret_matches
from keyguard.scan.prefilter import may_hold_secret

ROOT = Path(__file__).resolve().parents[2]

PW = "1qk#7yX"[::-1]  # a short password, never written whole in this file

PROSE = [
    "",
    "Please summarise the key points of the Q3 report in two sentences.",
    "Revenue grew 12% year over year, driven by the cloud segment; margin rose 2 points.",
    "Call me at 10:30 (room 4.2) - it's the usual place, isn't it? Yes, 'the usual' one",
    "Ünïcödé prose — with dashes, «quotes» and 数字 1234 5678 is still prose.",
]


@pytest.mark.parametrize("text", PROSE)
def test_prose_closes_the_gate(text: str) -> None:
    assert not may_hold_secret(text)
    assert secret_matches(text) == []


@pytest.mark.parametrize(
    "text",
    [
        f"postgres://app:{PW}@db.internal:5432/orders",
        f"Server=sql1;User Id=app;Password={PW};",
        "Authorization: Basic dXNlcjpxeA==",
        'token = "sk-ab" + "cd12" + "ef34"',
        "k = 'AbCd',\n  'EfGh'",
        "sig%3Dabc",
        "value \\u0041\\u0042",
        "-----BEGIN PRIVATE KEY-----",
        "AKIAABCDEFGHIJKLMNOP",
        "a" * 16,
        "ＡＫＩＡ" + "Ａ" * 16,  # full-width: the engine folds before the gate
    ],
)
def test_anchors_open_the_gate(text: str) -> None:
    assert may_hold_secret(prepare(text).text)


def _guard_texts() -> Iterator[str]:
    sys.path.insert(0, str(ROOT / "bench" / "guard"))
    try:
        from corpus import load_cases  # type: ignore[import-not-found]

        for case in load_cases(seed=14):
            if case.body is not None:
                yield from (slot.text for slot in request_slots(case.operation, case.body))
            elif case.text is not None:
                yield case.text
    finally:
        sys.path.remove(str(ROOT / "bench" / "guard"))
        sys.modules.pop("corpus", None)
        sys.modules.pop("generators", None)


def _scan_texts() -> Iterator[str]:
    sys.path.insert(0, str(ROOT / "bench" / "scan"))
    try:
        from corpus import fill_text, template_files

        for path in template_files():
            yield fill_text(path.name, path.read_text())[0]
    finally:
        sys.path.remove(str(ROOT / "bench" / "scan"))
        sys.modules.pop("corpus", None)


def _lines_around(text: str, start: int, end: int) -> str:
    lo = text.rfind("\n", 0, max(0, start - 1)) + 1
    hi = text.find("\n", end + 1)
    return text[lo : len(text) if hi == -1 else hi]


def _assert_gate_holds(text: str) -> int:
    body = prepare(text).text
    found = _scan(body)
    if not found:
        return 0
    assert may_hold_secret(body)
    for _, match in found:
        part = _lines_around(body, match.start, match.end)
        if _scan(part):
            assert may_hold_secret(part), part
    return len(found)


@pytest.mark.parametrize("texts", [_guard_texts, _scan_texts], ids=["guard", "scan"])
def test_every_corpus_secret_opens_the_gate(texts: object) -> None:
    assert callable(texts)
    assert sum(_assert_gate_holds(t) for t in texts()) > 100


def test_the_engine_finds_the_same_with_and_without_the_gate() -> None:
    engine = GuardEngine()
    for text in _guard_texts():
        body = prepare(text).text
        assert secret_matches(body) == _scan(body)
    assert engine.scan(PROSE[1]) == []
