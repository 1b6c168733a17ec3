"""The SIEM streams' shared parts: Retry-After read and bounded, losses reported at once and
then at most once a minute with the count, a buffer bounded in bytes as well as lines."""

from __future__ import annotations

from email.utils import formatdate

from keyguard.audit.delivery import (
    MAX_RETRY_AFTER_S,
    Attempt,
    LossReport,
    Stream,
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


class Refusing(Stream):
    """A receiver that never takes a batch."""

    def _send(self, batch: list[str]) -> Attempt:
        return Attempt(False)


def test_the_buffer_is_bounded_in_bytes_too_the_oldest_dropped() -> None:
    stream = Refusing(max_lines=1000, max_bytes=1000, initial_s=10, max_s=10)
    stream.start()
    try:
        stream.write([f"{n:03d}" + "x" * 97 for n in range(25)])  # 2,500 characters
        assert stream.waiting == 10 and stream.dropped == 15 and stream.losses == 15
        assert stream._lines[0][2].startswith("015")  # the newest kept, in order
    finally:
        stream.close(0.1)
