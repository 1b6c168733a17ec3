"""Plain text chunks taken as runs (their bytes sliced, no object per chunk): fed many to a
read, as an upstream sends them, the guard must send exactly what it sends when fed one chunk
at a time, release a run part-way at a chunk's end, and write edits into a run's chunks.

Hostile cases: a value split across the chunks of one run and across two reads, a chunk with
bad UTF-8 or an escape in the middle of a run, a chunk of another shape between runs, a run
cut by a block part-way (nothing after the value's first piece is sent)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from keyguard.proxy.stream_pieces import Run

from .test_guard_stream import SECRET, chunk, guard, scan, texts


def feed_in_reads(action: str, events: list[bytes], cuts: list[int]) -> tuple[bytes, list[str]]:
    """Feed ``events`` in reads that end after the events numbered in ``cuts``."""
    g = guard(action)
    out, start = [], 0
    for cut in sorted(set(cuts)) + [len(events)]:
        if cut > start:
            out.append(g.feed(b"".join(events[start:cut])))
            start = cut
    out.append(g.flush(b""))
    return b"".join(out), [f"{h.category}:{h.action}" for h in g.hits]


def one_by_one(action: str, events: list[bytes]) -> tuple[bytes, list[str]]:
    return feed_in_reads(action, events, list(range(len(events))))


def stream_of(words: list[str]) -> list[bytes]:
    return [chunk("", index=0), *(chunk(w) for w in words), chunk(finish="stop")]


def test_a_run_is_sent_as_one_chunk_at_a_time_would_be_sent() -> None:
    words = [f"word{i} " for i in range(60)]
    events = stream_of(words)
    whole, hits = feed_in_reads("redact", events, [])
    assert (whole, hits) == one_by_one("redact", events)
    assert texts(whole)[0] == "".join(words)


def test_a_run_is_released_part_way_at_a_chunks_end_and_holds_the_window() -> None:
    g = guard("redact", window=64)
    events = stream_of([f"w{i:03d} " for i in range(40)])  # 5 characters a chunk
    sent = g.feed(b"".join(events[:-1]))
    body = events[1:-1]
    assert sent == events[0] + b"".join(body[: len(body) - 13])  # 64 characters held: 13 chunks
    rest = g.feed(events[-1]) + g.flush(b"")
    assert sent + rest == b"".join(events)


def test_a_value_split_inside_one_read_is_redacted_in_the_runs_chunks() -> None:
    pieces = ["key: ", *(SECRET[i : i + 6] for i in range(0, len(SECRET), 6)), " done"]
    events = stream_of(pieces)
    for cuts in ([], [3], [2, 5, 7]):
        out, hits = feed_in_reads("redact", events, cuts)
        assert texts(out)[0] == "key: [TEST_KEY_1] done", cuts
        assert SECRET[:6].encode() not in out and hits == ["test_key:redact"]
    # a run released part-way (the clean words), the rest edited once the value is whole
    words = ["word "] * 20
    events = stream_of([*words, *pieces])
    out, hits = feed_in_reads("redact", events, [len(events) - 2])
    assert texts(out)[0] == "".join(words) + "key: [TEST_KEY_1] done"


def test_a_block_inside_a_run_sends_nothing_from_the_values_first_piece() -> None:
    pieces = ["safe text "] * 10 + ["then ", SECRET[:10], SECRET[10:], " tail"]
    for cuts in ([], [11]):  # all in one read; the safe text in a read of its own first
        out, hits = feed_in_reads("block", stream_of(pieces), cuts)
        text, finishes = texts(out)
        assert SECRET[:10] not in text and finishes[-1] == "content_filter"
        assert out.endswith(b"data: [DONE]\n\n") and hits == ["test_key:block"]
    out, _ = feed_in_reads("block", stream_of(pieces), [11])
    released = texts(out)[0]  # what passed the window before the value was found
    assert released.startswith("safe text " * 3) and ("safe text " * 10).startswith(released)


def test_bad_bytes_or_an_escape_in_a_run_end_it_and_are_read_apart() -> None:
    good = [chunk(f"a{i} ") for i in range(5)]
    bad = chunk("zz").replace(b'"zz"', b'"\xff\xfe"')
    escaped = chunk('say "hi"')
    events = [chunk(""), *good, bad, *good, escaped, *good, chunk(finish="stop")]
    assert feed_in_reads("redact", events, []) == one_by_one("redact", events)


def test_a_chunk_of_another_shape_between_runs_keeps_its_place() -> None:
    other = chunk("x").replace(b'"delta":{', b'"delta":{"refusal":null,')
    events = [chunk(""), *(chunk(f"b{i} ") for i in range(8)), other]
    events += [chunk(f"c{i} ") for i in range(8)] + [chunk(finish="stop")]
    out, _ = feed_in_reads("redact", events, [])
    assert out == b"".join(events)


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(
        st.sampled_from(["a ", "bb ", "SECRET-", "0123", "4567", "89", "\n", '"q"', "é", ""]),
        max_size=40,
    ),
    cuts=st.lists(st.integers(0, 42), max_size=6),
    action=st.sampled_from(["block", "redact", "alert"]),
)
def test_any_reads_send_what_one_chunk_at_a_time_sends(
    words: list[str], cuts: list[int], action: str
) -> None:
    """The same decisions and, but for a block, the same bytes. A block ends both streams the
    same way, after none of the value; the safe text before it may end at another chunk,
    since where the held text is read (each quarter of the window) depends on the reads."""
    events = stream_of(words)
    got, want = feed_in_reads(action, events, cuts), one_by_one(action, events)
    if action != "block" or not want[1]:
        assert got == want
        return
    assert got[1] == want[1]
    whole = "".join(words)
    first = min(m.start for m in scan(whole))
    for out in (got[0], want[0]):
        sent, finishes = texts(out)
        assert whole.startswith(sent) and len(sent) <= first  # nothing of the value
        assert finishes[-1] == "content_filter" and out.endswith(b"data: [DONE]\n\n")


def test_a_block_after_a_partial_reading_step_sends_none_of_the_value() -> None:
    """Found by the property above: one read of the whole stream releases the safe text up
    to the window, fed chunk by chunk up to the last full reading step; neither sends any of
    the value."""
    words = ["a "] * 19 + ["SECRET-"] * 6 + ["0123"]
    events = stream_of(words)
    for out, _ in (feed_in_reads("block", events, []), one_by_one("block", events)):
        sent, finishes = texts(out)
        assert set(sent) <= {"a", " "} and finishes[-1] == "content_filter"


def test_a_run_taken_part_way_keeps_each_chunks_text_offsets() -> None:
    raw = b"".join(chunk(w) for w in ["ab", "", "cde", "f"])
    sizes = [len(chunk(w)) for w in ["ab", "", "cde", "f"]]
    ends = [sum(sizes[: i + 1]) for i in range(4)]
    run = Run(raw, (0, -1), 10, ends, [12, 12, 15, 16])
    assert run.take(2) == chunk("ab") + chunk("")
    events = run.events()
    assert [e.raw for e in events] == [chunk("cde"), chunk("f")]
    assert [(p.start, p.end) for e in events for p in e.pieces] == [(12, 15), (15, 16)]
    whole = Run(raw, (0, -1), 10, ends, [12, 12, 15, 16]).events()
    assert [[(p.start, p.end) for p in e.pieces] for e in whole] == [
        [(10, 12)],
        [],
        [(12, 15)],
        [(15, 16)],
    ]
