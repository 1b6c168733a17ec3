"""Times as text: always UTC, always ending in ``Z``.

* :func:`utc_seconds` for people (CLI tables, the admin API's JSON, alerts):
  ``2026-03-01T12:00:00Z``;
* :func:`utc_micro` for records whose text is hashed (the audit chain):
  ``2026-03-01T12:00:00.000000Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utc_micro", "utc_seconds"]


def utc_seconds(value: datetime | None) -> str | None:
    """``2026-03-01T12:00:00Z`` (``None`` stays ``None``)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="seconds")[:-6] + "Z"


def utc_micro(value: datetime) -> str:
    """``2026-03-01T12:00:00.000000Z``: one text form per instant."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"
