"""Durations written the way operators write them: ``90d``, ``12h``, ``30m``, ``45s``."""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import shown

__all__ = ["parse_duration", "format_duration"]

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"([1-9][0-9]{0,6})([dhms])")
_MAX = timedelta(days=100 * 365)


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """``"90d"`` -> 90 days; one positive integer and one unit (d, h, m, s); with
    ``allow_zero``, also ``0`` or ``0s`` (a grace period of none).

    Raises ``ValueError`` with a message suitable for a user on anything else.
    """
    if allow_zero and text.strip() in ("0", "0s"):
        return timedelta(0)
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"invalid duration {shown(text)}: use a positive number and a unit, "
            "such as 90d, 12h, 30m or 45s"
        )
    value = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if value > _MAX:
        raise ValueError(f"duration {text!r} is longer than 100 years")
    return value


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration` for whole units (``timedelta(days=90)`` -> ``90d``)."""
    seconds = int(value.total_seconds())
    for unit, size in _UNITS.items():
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
