"""Verify the audit trail (in the store, or an exported file) and export it as JSON lines.

The CLI (``keyguard audit verify|export``) and any admin endpoint call these functions.
The trail is one chain per writer (:mod:`.chain`) tied together by signed head sets
(:mod:`.heads`). Verifying walks every chain on its own (:class:`~.verify.ChainVerifier`) with
its checkpoints, its anchored checkpoints and every head that a valid head set (in the store,
the file, or an anchor) names for it; a chain that a head set names but that holds no record
at all was deleted whole.

An export holds every record (``{"type": "record", "chain": ..., ...}``), checkpoint
(``{"type": "checkpoint", ...}``) and head set (``{"type": "heads", ...}``) in the order of
their times, across writers; ``verify_lines`` checks such a file on its own, with only the
public key. ``anchors`` is ``(name, line, checkpoint or head set)`` for every anchored line.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ..errors import ConfigurationError
from .chain import Checkpoint, Record, canonical
from .heads import Heads
from .manifest import Manifest
from .store import AuditStore
from .verify import ChainVerifier, VerifyReport

__all__ = ["verify_store", "verify_lines", "export_lines", "Anchored", "Progress"]

Check = Callable[[Any], bool]
Anchored = tuple[str, int, Checkpoint | Heads]  # (file, line, checkpoint or head set)
#: chain -> {(seq, hash): where the first head set naming it is}
Claims = dict[str, dict[tuple[int, str], str]]


class _Trail:
    """The parts shared by every chain's walk: head sets' claims and anchored checkpoints."""

    def __init__(self, check: Check, anchors: Iterable[Anchored]) -> None:
        self.check = check
        self.report = VerifyReport()
        self.claims: Claims = defaultdict(dict)
        self.anchored: dict[str, list[tuple[str, int, Checkpoint]]] = defaultdict(list)
        for name, line, item in anchors:
            if isinstance(item, Heads):
                self.heads(item, f"of {item.created} ({name}:{line})", anchored=True)
            else:
                self.anchored[item.chain].append((name, line, item))

    def heads(self, heads: Heads | str, where: str, *, anchored: bool = False) -> None:
        report = self.report
        if anchored:
            report.anchors += 1
        else:
            report.head_sets += 1
        if isinstance(heads, str):
            report.problems.append(heads)
            return
        if not self.check(heads):
            report.problems.append(
                f"head set {where}: its signature is not valid for a known public key "
                "(forged or edited)"
            )
            return
        for chain, seq, digest in heads.heads:
            self.claims[chain].setdefault((seq, digest), where)

    def walk(self, chain: str, partial: bool = False, given: Iterable[Checkpoint] = ()) -> _Walk:
        return _Walk(self, chain, partial, given)

    def archived(self, lines: list[str]) -> None:
        """Chains moved out by ``keyguard audit archive``: their signed manifests stand for
        them (a head naming a record past the archived end still fails)."""
        archived = 0
        for line in lines:
            try:
                manifest = Manifest.from_line(line)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self.report.problems.append("an archive manifest in the store is damaged")
                continue
            if not self.check(manifest):
                self.report.problems.append(
                    f"the archive manifest of writer {manifest.chain}: its signature is not "
                    "valid (forged or edited)"
                )
                continue
            claims = self.claims.pop(manifest.chain, {})
            self.anchored.pop(manifest.chain, None)
            for (seq, digest), where in claims.items():
                past = seq > manifest.last_seq
                if past or (seq == manifest.last_seq and digest != manifest.last_hash):
                    self.report.problems.append(
                        f"writer {manifest.chain}: the head set {where} names seq {seq}, but "
                        f"its archive ({manifest.file}) ends at seq {manifest.last_seq}"
                    )
            archived += 1
        if archived:
            self.report.notes.append(
                f"{archived} chain(s) archived out of the store: verify the archive with "
                "keyguard audit verify --archive DIR"
            )

    def absent(self, chains: set[str], complete: bool) -> None:
        """Chains named by head sets or anchors but holding no record here."""
        for chain in sorted(set(self.claims) | set(self.anchored)):
            if chain in chains:
                continue
            seqs = [seq for seq, _ in self.claims.get(chain, {})]
            seqs += [cp.seq for _, _, cp in self.anchored.get(chain, [])]
            if complete:
                self.report.problems.append(
                    f"writer {chain}: a head set or an anchor names its chain up to seq "
                    f"{max(seqs)}, but it holds no record: the whole chain was deleted"
                )
            else:
                self.report.notes.append(
                    f"writer {chain}: named by a head set, no record in this export"
                )

    def add(self, part: VerifyReport, chain: str) -> None:
        report = self.report
        report.chains += 1
        if report.chains == 1:
            report.first_seq = part.first_seq
        report.records += part.records
        report.checkpoints += part.checkpoints
        report.anchors += part.anchors
        report.last_seq += part.last_seq
        report.last_sealed += part.last_sealed
        report.problems += part.problems
        report.more_problems += part.more_problems
        report.notes += part.notes
        if part.first_bad is not None and report.first_bad is None:
            report.first_bad = part.first_bad
            report.first_bad_chain = chain


class _Walk:
    """Feeds one chain's verifier records in order, each followed by the checkpoints, the
    anchored checkpoints and the claimed heads at its seq."""

    def __init__(
        self, trail: _Trail, chain: str, partial: bool, given: Iterable[Checkpoint]
    ) -> None:
        self.trail = trail
        self.verifier = ChainVerifier(given, trail.check, partial=partial, chain=chain)
        self._anchors = sorted(trail.anchored.pop(chain, []), key=lambda a: -a[2].seq)
        claims = trail.claims.pop(chain, {})
        self._claims = sorted(((s, d, w) for (s, d), w in claims.items()), key=lambda c: -c[0])

    def record(self, rec: Record, checkpoints: list[Checkpoint]) -> None:
        self.verifier.feed(rec)
        for cp in checkpoints:
            self.verifier.seal(cp)
        self._outside(rec.seq)

    def _outside(self, upto: int) -> None:
        while self._anchors and self._anchors[-1][2].seq <= upto:
            name, line, cp = self._anchors.pop()
            self.verifier.seal(cp, anchor=f"{name}:{line}")
        while self._claims and self._claims[-1][0] <= upto:
            seq, digest, where = self._claims.pop()
            self.verifier.claim(seq, digest, where)

    def finish(self, leftover: Iterable[Checkpoint]) -> None:
        for cp in leftover:
            self.verifier.seal(cp)
        self._outside(2**63)
        self.trail.add(self.verifier.finish(), self.verifier.chain)


@dataclass
class Progress:
    """How far a walk of the store got, updated as it goes: a run stopped early says where."""

    chains: int = 0  # chains walked to their end
    records: int = 0
    chain: str = ""  # the chain being walked
    seq: int = 0  # the last record read in it


async def verify_store(
    store: AuditStore,
    check: Check,
    anchors: Iterable[Anchored] = (),
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify the trail as it is now: each chain up to its head read first (a batch committed
    meanwhile is left for the next run; its checkpoint is committed with it). ``progress``
    is kept up to date as the walk goes."""
    progress = progress if progress is not None else Progress()
    chains = await store.chains()  # before the head sets: every head they name is older
    trail = _Trail(check, anchors)
    async for heads in store.head_sets():
        where = f"of {heads.created}" if isinstance(heads, Heads) else "(damaged)"
        trail.heads(heads, where)
    for chain in sorted(chains):
        head = chains[chain]
        walk = trail.walk(chain)
        checkpoints = store.checkpoints(chain=chain, upto=head.seq).__aiter__()
        waiting: Checkpoint | None = await anext(checkpoints, None)
        progress.chain = chain
        async for rec in store.records(chain=chain, upto=head.seq):
            progress.records += 1
            progress.seq = rec.seq
            sealing: list[Checkpoint] = []
            while waiting is not None and waiting.seq <= rec.seq:
                sealing.append(waiting)
                waiting = await anext(checkpoints, None)
            walk.record(rec, sealing)
        walk.finish([] if waiting is None else [waiting, *[cp async for cp in checkpoints]])
        progress.chains += 1
    trail.archived(await store.archives())
    trail.absent(set(chains), complete=True)
    return trail.report


def verify_lines(
    lines: Iterable[str], check: Check, anchors: Iterable[Anchored] = ()
) -> VerifyReport:
    """Verify an export; a chain that starts after seq 1 in it (``--since``) is checked from
    its start."""
    records: dict[str, list[Record]] = defaultdict(list)
    checkpoints: dict[str, list[Checkpoint]] = defaultdict(list)
    heads: list[Heads] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            kind = obj.get("type")
            if kind == "checkpoint":
                cp = Checkpoint.from_json(obj)
                checkpoints[cp.chain].append(cp)
            elif kind == "heads":
                heads.append(Heads.from_json(obj))
            else:
                rec = Record.from_json(obj)
                records[rec.chain].append(rec)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise ConfigurationError(f"line {number}: not an audit export record") from None
    trail = _Trail(check, anchors)
    for h in heads:
        trail.heads(h, f"of {h.created}")
    complete = True
    for chain in sorted(records):
        recs = sorted(records[chain], key=lambda r: r.seq)
        partial = recs[0].seq != 1
        complete = complete and not partial
        walk = trail.walk(chain, partial, checkpoints.pop(chain, []))
        for rec in recs:
            walk.record(rec, [])
        walk.finish([])
    for chain, orphans in checkpoints.items():  # checkpoints of a chain with no record here
        walk = trail.walk(chain, partial=not complete)
        walk.finish(orphans)
    trail.absent(set(records) | set(checkpoints), complete=complete)
    return trail.report


async def export_lines(store: AuditStore, since: datetime | None) -> AsyncIterator[str]:
    """Records, checkpoints and head sets of every chain, in the order of their times."""
    streams = [
        _lines(store.records_by_time(since=since)),
        _lines(store.checkpoints_by_time(since=since)),
        _lines(store.head_sets(since=since)),
    ]
    firsts: list[tuple[str, int, str]] = []
    for i, stream in enumerate(streams):
        item = await anext(stream, None)
        if item is not None:
            heapq.heappush(firsts, (item[0], i, item[1]))
    while firsts:
        _, i, line = heapq.heappop(firsts)
        yield line
        item = await anext(streams[i], None)
        if item is not None:
            heapq.heappush(firsts, (item[0], i, item[1]))


async def _lines(items: AsyncIterator[Any]) -> AsyncIterator[tuple[str, str]]:
    async for item in items:
        if isinstance(item, str):
            continue  # a damaged head set: verify names it
        yield item.created, canonical(item.to_json())
