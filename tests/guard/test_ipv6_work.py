"""IPv6 addresses: each colon's run of hex digits and colons is bounded by one search, not
walked character by character up to 45 back and 45 ahead (a line of colons read each
character some forty times: 0.35 s for 64 KB on the event loop). Counted, not timed: the
characters the detector indexes one by one."""

from __future__ import annotations

from typing import Any

import pytest

from keyguard.guard.pii_contact import _ipv6


class Indexed(str):
    reads = 0

    def __getitem__(self, key: Any) -> str:
        if isinstance(key, int):
            Indexed.reads += 1
        return super().__getitem__(key)


@pytest.mark.parametrize("unit", [":", "::1:", "a::", "fe80::"])
def test_a_line_of_colons_is_not_walked_per_colon(unit: str) -> None:
    text = Indexed(unit * (30_000 // len(unit)))
    Indexed.reads = 0
    list(_ipv6(text))
    assert Indexed.reads <= 4 * text.count(":")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("reach 2a00:1450:4001:81c::200e now", ["2a00:1450:4001:81c::200e"]),
        ("g:2a00:1450:4001:81c::200e", []),  # joined to a word
        ("2a00:1450:4001:81c::200e.x", []),
        ("2a00:1450:4001:81c::200e. End", ["2a00:1450:4001:81c::200e"]),
        ("::1 fe80::1 ff02::1 ::ffff:8.8.8.8", []),  # loopback, link-local, multicast, mapped
        (":" * 60 + " 2a00:1450:4001:81c::200e", ["2a00:1450:4001:81c::200e"]),
        ("ab" * 40 + ":2a00:1450::1", []),
    ],
)
def test_addresses_are_found_as_before(text: str, found: list[str]) -> None:
    assert [text[m.start : m.end] for m in _ipv6(text)] == found
