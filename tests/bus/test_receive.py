"""The receiving end of the replica bus against a hostile writer of its transport: forged,
stale, replayed and flooded messages are refused and counted; nothing raises."""

from __future__ import annotations

import orjson
import pytest

from keyguard.bus import Message, Receiver, sign
from keyguard.bus.base import MAX_MESSAGE, verify

KEY = b"k" * 32
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.wall = NOW
        self.mono = 100.0

    def advance(self, s: float) -> None:
        self.wall += s
        self.mono += s


def receiver(clock: Clock, **kw: float) -> tuple[Receiver, list[Message]]:
    r = Receiver(KEY, "me", clock=lambda: clock.wall, monotonic=lambda: clock.mono, **kw)  # type: ignore[arg-type]
    got: list[Message] = []
    r.subscribe("key", got.append)
    return r, got


def msg(at: float = NOW, nonce: str = "n0000001", sender: str = "other", key: bytes = KEY) -> bytes:
    return sign(key, Message("key", sender, {"id": "abcdefghijkl"}, at, nonce))


def test_a_signed_fresh_message_is_handled_once() -> None:
    clock = Clock()
    r, got = receiver(clock)
    assert r.deliver(msg()) is not None
    assert [m.data for m in got] == [{"id": "abcdefghijkl"}]
    assert r.received == 1 and r.dropped == 0


def test_a_message_signed_with_another_key_is_refused() -> None:
    clock = Clock()
    r, got = receiver(clock)
    assert r.deliver(msg(key=b"x" * 32)) is None
    assert got == [] and r.refused["forged"] == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"no-space",
        b"00 [1,2]",
        b"x" * (MAX_MESSAGE + 1),
        b"\xff\xfe garbage",
    ],
)
def test_garbage_from_the_transport_is_refused_without_raising(raw: bytes) -> None:
    clock = Clock()
    r, got = receiver(clock)
    assert r.deliver(raw) is None
    assert got == [] and r.refused["forged"] == 1


def test_a_well_signed_but_malformed_body_is_refused() -> None:
    import hashlib
    import hmac

    for body in (
        orjson.dumps(["key", "other", {}]),  # the old shape: no time, no nonce
        orjson.dumps(["nope", "other", {}, NOW, "n0000001"]),
        orjson.dumps(["key", "other", {}, "soon", "n0000001"]),
        orjson.dumps(["key", "other", {}, True, "n0000001"]),
        orjson.dumps(["key", "other", {}, NOW, "short"]),
        orjson.dumps(["key", "other", [], NOW, "n0000001"]),
    ):
        tag = hmac.new(KEY, body, hashlib.sha256).hexdigest().encode()
        assert verify(KEY, tag + b" " + body) is None


def test_a_replayed_message_is_refused_within_the_window_and_stale_after_it() -> None:
    clock = Clock()
    r, got = receiver(clock)
    raw = msg()
    assert r.deliver(raw) is not None
    clock.advance(5)
    assert r.deliver(raw) is None and r.refused["replayed"] == 1
    clock.advance(30)  # past the window: no longer remembered, and refused as stale
    assert r.deliver(raw) is None and r.refused["stale"] == 1
    assert len(got) == 1


def test_a_message_from_the_future_is_refused() -> None:
    clock = Clock()
    r, got = receiver(clock)
    assert r.deliver(msg(at=NOW + 31)) is None and r.refused["stale"] == 1
    assert r.deliver(msg(at=NOW + 29, nonce="n0000002")) is not None


def test_its_own_messages_are_skipped_silently() -> None:
    clock = Clock()
    r, got = receiver(clock)
    assert r.deliver(msg(sender="me")) is None
    assert got == [] and r.dropped == 0


def test_a_flood_is_cut_before_any_hmac_and_the_bucket_refills() -> None:
    clock = Clock()
    r, got = receiver(clock, rate=10.0, burst=20.0)
    for i in range(1000):
        r.deliver(msg(nonce=f"n{i:07d}"))
    assert r.received == 20 and r.refused["flood"] == 980
    clock.advance(1.0)
    for i in range(1000, 1100):
        r.deliver(msg(at=clock.wall, nonce=f"n{i:07d}"))
    assert r.received == 30


def test_the_set_of_nonces_is_bounded_and_full_means_refused() -> None:
    clock = Clock()
    r, got = receiver(clock, max_seen=5)
    for i in range(8):
        r.deliver(msg(nonce=f"n{i:07d}"))
    assert r.received == 5 and r.refused["replayed"] == 3
    clock.advance(31)  # the remembered nonces expire: room again
    assert r.deliver(msg(at=clock.wall, nonce="n9999999")) is not None


def test_a_failing_handler_is_logged_and_the_others_still_run() -> None:
    clock = Clock()
    r, got = receiver(clock)

    def broken(message: Message) -> None:
        raise RuntimeError("boom")

    r.handlers["key"].insert(0, broken)
    assert r.deliver(msg()) is not None
    assert len(got) == 1
