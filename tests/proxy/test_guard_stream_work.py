"""The stream guard's work per event is bounded by what the event brings, not by what the
stream holds: an upstream sending one tiny event at a time (each to a new choice or tool call,
or many without text behind a held text) must not make each event cost the whole stream so
far. Counted, not timed: the texts reviewed and the held events walked."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from keyguard.errors import UpstreamTooLarge
from keyguard.guard.decide import Placeholders
from keyguard.guard.findings import Match
from keyguard.policy.guardrails import Effective, GuardActions
from keyguard.proxy.guard_stream import MAX_HELD_EVENTS, MAX_TEXTS, StreamGuard

from .test_guard_stream import SECRET, chunk, guard, scan, texts


def tool_call(choice: int, call: int, arguments: str) -> bytes:
    delta = {"tool_calls": [{"index": call, "function": {"arguments": arguments}}]}
    obj = {"choices": [{"index": choice, "delta": delta}]}
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class Walked(list[Any]):
    """The held events, counting each one a loop over them visits."""

    visits = 0

    def __iter__(self) -> Any:
        for item in super().__iter__():
            Walked.visits += 1
            yield item


def test_a_feed_reviews_only_the_texts_it_added_to(monkeypatch: pytest.MonkeyPatch) -> None:
    reviews = 0
    review = StreamGuard._review

    def counted(self: StreamGuard, *args: Any) -> int:
        nonlocal reviews
        reviews += 1
        return review(self, *args)

    monkeypatch.setattr(StreamGuard, "_review", counted)
    g = guard("redact")
    n = 2_000  # each event starts the text of a new tool call
    sent = [g.feed(tool_call(k // 100, k % 100, "{}")) for k in range(n)]
    sent.append(g.flush())
    assert reviews <= 2 * n  # one per event, then each text once at the end
    assert b"".join(sent).count(b"\n\n") == n


@pytest.mark.parametrize("blocker", ["none", "another choice"])
def test_events_piled_behind_a_held_text_after_a_redaction_are_not_walked_per_feed(
    blocker: str,
) -> None:
    g = guard("redact")
    Walked.visits = 0
    g._held = Walked()
    first = [chunk(SECRET + " " + "y" * 300)]  # redacted; its edit is written
    if blocker != "none":  # its events wait behind another choice's held text
        first.insert(0, chunk("hold", index=1))
    else:
        first.append(chunk("hold"))
    n = 3_000
    events = first + [b'data: {"choices":[]}\n\n'] * n
    out = b"".join([*(g.feed(e) for e in events), g.flush()])
    assert Walked.visits <= 4 * n
    text, _ = texts(out)
    assert SECRET not in text and "[TEST_KEY_1]" in text and "hold" in text
    assert out.count(b"\n\n") == n + 2


def test_a_value_that_keeps_growing_is_not_read_again_at_every_step() -> None:
    """A match that may still grow holds its text; reading all of it again each quarter
    window made one endless token (``Bearer`` and base64 without end) cost its length
    squared. What is read in all stays a few times what arrived, and the value is still
    judged whole: nothing of it is sent."""
    read = 0

    def counted(text: str) -> list[Match]:
        nonlocal read
        read += len(text)
        return scan(text)

    g = StreamGuard(
        counted,
        Effective([GuardActions(secret="block")]),
        lambda v: "fp",
        placeholders=Placeholders(),
        restore=None,
        window=64,
        context=128,
    )
    pieces = ["Here: SECRET-"] + ["0123456789"] * 3_000 + [" done"]
    out = b"".join([*(g.feed(chunk(p)) for p in pieces), g.flush()])
    arrived = sum(map(len, pieces))
    assert read <= 8 * arrived
    text, finishes = texts(out)
    assert "SECRET" not in text and "0123" not in text and finishes[-1] == "content_filter"


def test_texts_opened_without_end_stop_at_a_cap() -> None:
    """Each choice and tool call has a text (and its held events parsed): an upstream opening
    a new one per tiny event held ~2 KB of memory per 100 wire bytes, under a cap counted in
    wire bytes (128 MiB of them: gigabytes)."""
    g = guard("redact")
    opened = 0
    with pytest.raises(UpstreamTooLarge):
        for k in range(MAX_TEXTS + 10):
            g.feed(tool_call(k // 1000, k % 1000, "{}"))
            opened += 1
    assert opened <= MAX_TEXTS
    assert SECRET not in g.flush().decode()


def test_events_piled_behind_a_held_text_stop_at_a_count() -> None:
    g = guard("redact")
    g.feed(chunk("hold"))
    fed = 0
    with pytest.raises(UpstreamTooLarge):
        for _ in range(MAX_HELD_EVENTS + 10):
            g.feed(b'data: {"choices":[]}\n\n')
            fed += 1
    assert fed <= MAX_HELD_EVENTS
    out = g.flush()
    assert out.startswith(chunk("hold"))
