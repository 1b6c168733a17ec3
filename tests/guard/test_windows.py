"""The numeric windows: the four-digit shortcut never hides a run the search would keep.

Each case is checked against the run search alone (the shortcut bypassed): IPv4 addresses
(four digits, three dots), six digits cut by separators, digits cut by letters, and long
hostile masks of separators around a few digits."""

from __future__ import annotations

import re

import pytest

from keyguard.guard import windows
from keyguard.guard.windows import find_windows

CASES = [
    "",
    "no digits here",
    "Q3 revenue 4.2 billion, up 12 percent; 31 percent",
    "server 10.0.0.1 answered",
    "1.2.3.4",
    "card 4111 1111 1111 1111 now",
    "call +44 (20) 7946-0958",
    "12 34",
    "1a2b3c4d5e6f",
    "1-2-3-4-5-6",
    "111" + " " * 5000 + "1",
    " -" * 3000 + "1 1 1",
    "RSSMRA85T10A562S",
]


@pytest.mark.parametrize("text", CASES)
def test_the_shortcut_finds_what_the_search_finds(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = find_windows(text)
    monkeypatch.setattr(windows, "_FOUR", re.compile(rb""))  # always a candidate
    assert find_windows(text) == fast


def test_qualifying_runs_open_windows() -> None:
    assert find_windows("server 10.0.0.1 answered")[0]
    assert find_windows("card 4111 1111 1111 1111 now")[0]
    assert find_windows("Q3 revenue 4.2 billion, up 12 percent")[0] == []


def test_an_iban_head_with_letters_opens_a_window() -> None:
    text = "pay to MT31 MALT RDWZ KQPB XHNC ZUEA 6VM please"
    ((lo, hi),) = find_windows(text)[0]
    assert lo <= text.index("MT31") and hi >= text.index("6VM") + 3
    assert find_windows("error AB12 in module XY99")[0] == []  # too short
    assert find_windows("token xAB12CDEFGHIJKLMNOP")[0] == []  # inside a word
