"""The SIEM streams' shared decisions (pure): Retry-After read and bounded, losses reported
at once and then at most once a minute with the count."""

from __future__ import annotations

from email.utils import formatdate

from keyguard.audit.delivery import (
    MAX_RETRY_AFTER_S,
    Attempt,
    LossReport,
    retry_after_s,
    wait_after,
)

NOW = 1_796_300_000.0


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("7", NOW) == 7.0
    assert retry_after_s(" 0 ", NOW) == 0.0
    assert retry_after_s(formatdate(NOW + 30, usegmt=True), NOW) == 30.0
    assert retry_after_s(formatdate(NOW - 30, usegmt=True), NOW) == 0.0  # already past
    for unreadable in (None, "", "soon", "-5", "1e9", "Thu, 99 Foo"):
        assert retry_after_s(unreadable, NOW) is None, unreadable


def test_a_hostile_retry_after_is_bounded() -> None:
    asked = retry_after_s("9" * 40, NOW)  # a receiver asking for ever
    assert asked is not None and wait_after(Attempt(False, asked), 0.5) == MAX_RETRY_AFTER_S


def test_losses_are_reported_at_once_then_once_a_minute_with_the_count() -> None:
    report = LossReport(every_s=60)
    assert report.due(0, NOW) == 0
    assert report.due(3, NOW) == 3  # the first at once
    assert report.due(10, NOW + 30) == 0  # not again within the minute
    assert report.due(10, NOW + 61) == 7  # then the count since
    assert report.due(10, NOW + 200) == 0  # nothing new, nothing said
