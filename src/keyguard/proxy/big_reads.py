"""Large bodies read by the guardrails: a few at once, in worker threads, the rest refused.

A request body of more than ``INLINE_CHARS`` bytes has its texts found and read by the
guardrails in a worker thread (an answer: more than ``INLINE_CHARS`` characters of text), so
the event loop serves the other requests meanwhile. Each such read holds
a thread and its share of the interpreter for up to seconds (a megabyte of text packed with
candidate values costs one to two seconds), and the request holds its body and parsed
payload while it waits. So :class:`BigReads` lets ``running`` of them read at once and
``waiting`` more wait their turn; a request beyond those, or one that would wait while its
caller already has ``per_caller`` in the room (reading or waiting), is refused at once with
Azure's 429 and ``retry-after: 1``, as the upstream fair share refuses, before any of its
text is read: one caller with a few large requests in flight cannot pile bodies up in memory
or keep the others' requests waiting behind its own, while a reader left idle still reads
the caller's next one (an app sending its large requests a few at once is not refused for
nothing). The guardrails run before admission, so the limits have not counted the request
yet.

An answer's text (the upstream's, already paid for) is never refused: it waits for a reader.
The counts are this process's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..errors import TooManyRequests
from ..limits.model import retry_after_headers

__all__ = ["BigReads", "INLINE_CHARS"]

INLINE_CHARS = 65_536  # bodies read on the event loop; a larger one is read in a worker thread
_RETRY = retry_after_headers(1)  # Azure's pair: 1 s


class BigReads:
    def __init__(self, *, running: int = 2, waiting: int = 8, per_caller: int = 1) -> None:
        self.running = running
        self.waiting = waiting
        self.per_caller = per_caller
        self.refused = 0
        self._readers = asyncio.Semaphore(running)
        self._in_room = 0
        self._callers: dict[str, int] = {}

    @asynccontextmanager
    async def turn(self, caller: str | None) -> AsyncIterator[None]:
        """Wait for a reader; ``caller`` (a request's): refused when the room is full, or when
        the caller's share of it is and no reader is idle; ``None`` (an answer): waits
        whatever the count."""
        if caller is not None:
            held = self._callers.get(caller, 0)
            if held >= self.per_caller and self._readers.locked():  # it would wait
                self.refused += 1
                raise TooManyRequests(
                    f"This credential already has {held} large request(s) being read by the "
                    "gateway's guardrails. Wait for it to finish, or retry after 1 second.",
                    reason="guard_busy_caller",
                    headers=_RETRY,
                )
            if self._in_room >= self.running + self.waiting:
                self.refused += 1
                raise TooManyRequests(
                    "The gateway's guardrails are reading as many large requests as they "
                    "can. Retry after 1 second, or send less text at once.",
                    reason="guard_busy",
                    headers=_RETRY,
                )
            self._callers[caller] = held + 1
        self._in_room += 1
        try:
            async with self._readers:
                yield
        finally:
            self._in_room -= 1
            if caller is not None:
                left = self._callers[caller] - 1
                if left:
                    self._callers[caller] = left
                else:
                    del self._callers[caller]
