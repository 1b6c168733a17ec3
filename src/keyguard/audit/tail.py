"""What a writer checks before it starts its chain: the newest head sets against the records.

A writer never trusts the store. At start it reads the newest head set in the store that is
signed by its key (noting the forged ones on the way) and the newest one in its anchor, and
checks every head they name: the record must be there with that hash. A head past its chain's
end means that writer's newest records were deleted (with their checkpoints); a head whose
record differs means the chain was rewritten. What it finds goes into its chain's open record
(:mod:`.segments`) and a critical ``audit_tampered`` event. It also returns the heads to carry
into its own head sets (:mod:`.heads`). Only the newest head sets are read, not the whole log.
"""

from __future__ import annotations

from collections.abc import Callable

from .chain import Position
from .heads import Carried, Heads
from .rows import parse_iso
from .store import AuditStore

__all__ = ["survey", "MAX_EXAMINED", "HEADS_KEEP_S"]

MAX_EXAMINED = 1000  # head sets looked at for a valid one (forged rows cost a verify each)
HEADS_KEEP_S = 3600.0  # a chain that stopped moving is named in head sets this long


async def survey(
    store: AuditStore, check: Callable[[Heads], bool], *, anchored: Heads | None = None
) -> tuple[Carried, list[str]]:
    found: list[str] = []
    newest: Heads | None = None
    forged = 0
    async for item in store.head_sets(newest_first=True, limit=MAX_EXAMINED):
        if isinstance(item, Heads) and check(item):
            newest = item
            break
        forged += 1
        if forged == 1:
            found.append(
                item
                if isinstance(item, str)
                else f"head set of {item.created}: its signature is not valid (forged or edited)"
            )
    if forged > 1:
        found.append(f"{forged} head sets in all were forged or damaged")
    if anchored is not None and newest is not None and anchored.created > newest.created:
        found.append(
            f"the anchor holds a head set of {anchored.created}, newer than any in the store "
            f"({newest.created}): the newest head sets were deleted"
        )
    elif anchored is not None and newest is None:
        found.append(
            f"the anchor holds a head set of {anchored.created}, but the store holds none: "
            "they were deleted"
        )
    carried: Carried = {}
    for heads, where in ((newest, "store"), (anchored, "anchor")):
        if heads is None:
            continue
        at = parse_iso(heads.created).timestamp()
        for chain, seq, digest in heads.heads:
            found.extend(await _check_head(store, chain, seq, digest, heads.created, where))
            known = carried.get(chain)
            if known is None or seq > known[0].seq:
                carried[chain] = (Position(seq, digest), at)
    return carried, found


async def _check_head(
    store: AuditStore, chain: str, seq: int, digest: str, created: str, where: str
) -> list[str]:
    record = await store.record(seq, chain)
    if record is not None and record.hash == digest and record.intact():
        return []
    source = "the store" if where == "store" else "the anchor"
    if record is not None:
        return [
            f"record {seq} of writer {chain} does not match the head set of {created} in "
            f"{source}: records up to seq {seq} were rewritten"
        ]
    last = await store.head(chain)
    if last.seq < seq:
        return [
            f"the head set of {created} in {source} names seq {seq} of writer {chain}, but its "
            f"chain ends at seq {last.seq}: its newest records were deleted"
        ]
    return [f"record {seq} of writer {chain}, named by the head set of {created}, is missing"]
