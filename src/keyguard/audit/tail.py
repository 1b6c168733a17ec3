"""The end of the chain as a writer finds it before it writes: :func:`survey`.

A writer never trusts the store's head: at start (and whenever the head is not where it left
it) it looks for the newest checkpoint that is signed by its key and matches an intact record,
notes every checkpoint on the way that is forged or seals a record that is gone, and reads the
records the anchor and its own head name. :func:`~.segments.plan_open` turns that into where
the writer links and what it reports. Only the newest checkpoints are read, not the whole log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .chain import START, Checkpoint, Position
from .segments import Tail
from .store import AuditStore

__all__ = ["survey", "MAX_EXAMINED"]

MAX_EXAMINED = 10_000  # checkpoints looked at before giving up (forged rows cost a verify each)


async def survey(
    store: AuditStore,
    check: Callable[[Checkpoint], bool],
    *,
    anchored: Checkpoint | None = None,
    own: Position | None = None,
) -> Tail:
    head = await store.head()
    sealed, problems = START, Problems()
    examined, below = 0, None
    while sealed is START and examined < MAX_EXAMINED:
        page = await store.newest_checkpoints(below=below, limit=200)
        if not page:
            break
        for place, cp in page:
            examined += 1
            below = place
            if not check(cp):
                problems.add(
                    "forged",
                    f"checkpoint at seq {cp.seq} ({cp.created}): its "
                    "signature is not valid (forged or edited)",
                )
                continue
            if cp.seq > head.seq:
                problems.add(
                    "past",
                    f"checkpoint at seq {cp.seq} ({cp.created}) seals a "
                    f"record past the end of the log (seq {head.seq}): the newest "
                    "records were deleted",
                )
                continue
            record = await store.record(cp.seq)
            if record is None:
                problems.add(
                    "missing",
                    f"checkpoint at seq {cp.seq} ({cp.created}) seals "
                    f"record {cp.seq}, which is missing",
                )
            elif record.hash != cp.hash or not record.intact():
                problems.add(
                    "rewritten",
                    f"record {cp.seq} does not match its checkpoint "
                    f"({cp.created}): edited or rewritten",
                )
            else:
                sealed = record.position
                break
    if sealed is START and examined >= MAX_EXAMINED:
        problems.add("gave up", f"no valid checkpoint among the newest {examined}")
    tail = Tail(head=head, sealed=sealed, problems=problems.texts(), anchored=anchored)
    if anchored is not None and anchored.seq <= head.seq:
        found = await store.record(anchored.seq)
        tail = replace(tail, anchored_found=None if found is None else found.hash)
    if own is not None and own != START and own.seq <= head.seq:
        found = await store.record(own.seq)
        tail = replace(tail, own_found=None if found is None else found.hash)
    return tail


class Problems:
    """Findings by category: the first of each with a count of the others (a truncation can
    leave hundreds of checkpoints without their records: one line says it)."""

    def __init__(self) -> None:
        self._first: dict[str, str] = {}
        self._count: dict[str, int] = {}

    def add(self, kind: str, text: str) -> None:
        self._first.setdefault(kind, text)
        self._count[kind] = self._count.get(kind, 0) + 1

    def texts(self) -> tuple[str, ...]:
        return tuple(
            text + (f" (and {self._count[kind] - 1} more like it)" if self._count[kind] > 1 else "")
            for kind, text in self._first.items()
        )
