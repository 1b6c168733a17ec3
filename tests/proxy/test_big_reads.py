"""Large bodies read by the guardrails: a few at once, the rest refused before being read.

A hostile caller with one key could otherwise keep every reader busy, or pile its bodies up
in memory waiting for one, while the limits (after the guardrails) have not counted anything.
"""

from __future__ import annotations

import asyncio

import pytest

from keyguard.errors import TooManyRequests
from keyguard.proxy.big_reads import BigReads


class Reader:
    """A read in the room until released."""

    def __init__(self, reads: BigReads, caller: str | None) -> None:
        self.reading = asyncio.Event()
        self.done = asyncio.Event()
        self.task = asyncio.create_task(self._run(reads, caller))

    async def _run(self, reads: BigReads, caller: str | None) -> None:
        async with reads.turn(caller):
            self.reading.set()
            await self.done.wait()


async def _settle() -> None:
    for _ in range(5):  # a few turns of the loop: the tasks enter the room or wait
        await asyncio.sleep(0)


async def test_a_caller_reading_one_large_request_is_refused_a_second_that_would_wait() -> None:
    reads = BigReads(running=1, waiting=4, per_caller=1)
    first = Reader(reads, "key:a")
    await first.reading.wait()
    with pytest.raises(TooManyRequests) as refused:
        async with reads.turn("key:a"):
            pytest.fail("read while the caller's first read runs")
    assert refused.value.reason == "guard_busy_caller"
    assert refused.value.headers == {"retry-after": "1", "retry-after-ms": "1000"}
    other = Reader(reads, "key:b")  # another caller waits its turn, and is served
    await _settle()
    assert not other.task.done()
    first.done.set()
    await other.reading.wait()
    await first.task
    again = Reader(reads, "key:a")  # the first read over: the caller may wait again
    await _settle()
    assert not again.task.done()
    other.done.set()
    await again.reading.wait()
    again.done.set()
    await asyncio.gather(other.task, again.task)
    assert reads.refused == 1


async def test_a_full_room_refuses_at_once_and_a_freed_place_is_taken_again() -> None:
    reads = BigReads(running=1, waiting=2, per_caller=1)
    readers = [Reader(reads, f"key:{i}") for i in range(3)]  # one reads, two wait
    await readers[0].reading.wait()
    await _settle()
    assert not readers[1].reading.is_set() and not readers[2].reading.is_set()
    with pytest.raises(TooManyRequests) as refused:
        async with reads.turn("key:new"):
            pytest.fail("read beyond the room")
    assert refused.value.reason == "guard_busy"
    readers[0].done.set()
    await readers[1].reading.wait()  # the next in line reads
    late = Reader(reads, "key:new")  # and the freed place is taken
    await _settle()
    assert not late.task.done()
    for reader in (*readers, late):
        reader.done.set()
    await asyncio.gather(*(r.task for r in (*readers, late)))
    assert reads.refused == 1


async def test_an_answer_is_never_refused_it_waits() -> None:
    reads = BigReads(running=1, waiting=0, per_caller=1)
    request = Reader(reads, "key:a")
    await request.reading.wait()
    answers = [Reader(reads, None) for _ in range(3)]  # beyond the room: they wait
    await _settle()
    assert not any(a.task.done() or a.reading.is_set() for a in answers)
    request.done.set()
    for answer in answers:
        await answer.reading.wait()
        answer.done.set()
    await asyncio.gather(request.task, *(a.task for a in answers))
    assert reads.refused == 0


async def test_a_read_that_fails_gives_its_place_back() -> None:
    reads = BigReads(running=1, waiting=0, per_caller=1)
    with pytest.raises(ValueError):
        async with reads.turn("key:a"):
            raise ValueError("the engine failed")
    async with reads.turn("key:a"):  # neither the caller's count nor the room kept it
        pass
    assert reads.refused == 0


async def test_a_callers_second_large_request_is_read_when_a_reader_is_idle() -> None:
    """An app sending its large requests a few at once (an embeddings indexer, a backend
    serving its users with one key) is not refused while a reader is idle: a caller's share
    bounds only what would wait."""
    reads = BigReads(running=2, waiting=4, per_caller=1)
    first = Reader(reads, "key:a")
    await first.reading.wait()
    second = Reader(reads, "key:a")  # the other reader is idle: read at once
    await _settle()
    assert second.reading.is_set(), second.task.done() and second.task.exception()
    with pytest.raises(TooManyRequests) as refused:  # both readers busy: it would wait
        async with reads.turn("key:a"):
            pytest.fail("waited while the caller's reads run")
    assert refused.value.reason == "guard_busy_caller"
    other = Reader(reads, "key:b")  # another caller waits its turn ...
    await _settle()
    assert not other.reading.is_set()
    first.done.set()
    await other.reading.wait()  # ... and takes the first reader freed
    late = Reader(reads, "key:a")  # both busy again: the caller's third is refused
    await _settle()
    assert late.task.done() and isinstance(late.task.exception(), TooManyRequests)
    second.done.set()
    other.done.set()
    await asyncio.gather(first.task, second.task, other.task)
    assert reads.refused == 2
