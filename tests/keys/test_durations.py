from __future__ import annotations

from datetime import timedelta

import pytest

from keyguard.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        (" 1d ", timedelta(days=1)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "0d", "-1d", "1w", "1.5h", "d", "90", "1d2h", "90D", "٣d"])
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_too_long() -> None:
    with pytest.raises(ValueError, match="100 years"):
        parse_duration("9999999d")


def test_format() -> None:
    assert format_duration(timedelta(days=2)) == "2d"
    assert format_duration(timedelta(hours=36)) == "36h"
    assert format_duration(timedelta(seconds=61)) == "61s"
