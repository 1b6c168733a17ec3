"""Helpers for the scanner tests: scan a string, with a fixed fingerprint key."""

from __future__ import annotations

import pytest

from keyguard.scan.engine import scan_text
from keyguard.scan.findings import Finding

KEY = b"test-fingerprint-key"


def scan(text: str, path: str = "app.py") -> list[Finding]:
    return scan_text(text, path, KEY)


@pytest.fixture
def fkey() -> bytes:
    return KEY
