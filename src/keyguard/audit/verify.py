"""Verify one audit chain: records, checkpoints, anchored checkpoints and heads named by head
sets, walked in one pass (:mod:`.export` runs one walk per writer's chain).

Records are fed in ``seq`` order; each checkpoint right after the record it seals (the caller
merges two sorted streams, or hands a sorted list to the constructor), so a log of any length
is checked in constant memory. A log holds when:

* ``seq`` runs without a gap or a repeat (deleted, reordered or inserted records);
* each record's content gives its hash (edited), and its ``prev_hash`` is the previous
  record's hash, or, for a segment's open record (:mod:`.segments`), the hash of the sealed
  record it names;
* every checkpoint is signed by a known key and matches the record at its seq;
* **every record is sealed** by a later checkpoint on its path: writers commit each batch with
  its checkpoint, so a record no checkpoint covers was appended by someone without the key
  (or its checkpoints were deleted);
* every anchored checkpoint (kept outside the store) and every head a signed head set names
  (:mod:`.heads`) matches a record: one past the end of the chain means its newest records
  were deleted together with their checkpoints;
* in a writer's own chain, only the first record opens a segment.

Problems make the log fail; *notes* (a segment not closed: a writer still running, or one that
stopped without a clean shutdown) do not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .chain import GENESIS, START, Checkpoint, Position, Record
from .segments import parse_segment

__all__ = ["VerifyReport", "ChainVerifier", "verify"]

CheckSignature = Callable[[Checkpoint], bool]
_KEEP = 4096  # recent records and sealed positions remembered (bounded memory)
_MAX_PROBLEMS = 50  # listed; the rest are counted


@dataclass
class VerifyReport:
    records: int = 0
    checkpoints: int = 0
    anchors: int = 0  # anchored checkpoints and head sets checked
    chains: int = 0  # writers' chains walked
    head_sets: int = 0  # signed head sets checked
    last_seq: int = 0
    last_sealed: int = 0  # highest seq covered by a valid checkpoint
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0  # problems beyond those listed
    notes: list[str] = field(default_factory=list)
    first_bad: int | None = None  # lowest seq a problem names
    first_bad_chain: str = ""  # in the chain of that writer
    first_seq: int = 1

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsealed(self) -> int:
        return max(0, self.last_seq - self.last_sealed)


class ChainVerifier:
    def __init__(
        self,
        checkpoints: Iterable[Checkpoint],
        check_signature: CheckSignature,
        *,
        partial: bool = False,
        chain: str = "",
    ) -> None:
        """``checkpoints`` (sorted by seq or not) are applied as the records pass; more can be
        given one by one with :meth:`seal`. ``partial``: the first record fed starts the walk
        (an export made with ``--since``). ``chain``: the writer whose chain it is (named in
        every problem; "" for the shared chain of earlier versions)."""
        self.report = VerifyReport()
        self.chain = chain
        self._who = f"writer {chain}: " if chain else ""
        self._given = sorted(checkpoints, key=lambda cp: cp.seq, reverse=True)
        self._check = check_signature
        self._partial = partial
        self._prev: Position | None = None if partial else START
        self._pending: int | None = None  # first seq not sealed yet
        self._recent: OrderedDict[int, str] = OrderedDict()
        self._sealed: OrderedDict[int, str] = OrderedDict({0: GENESIS})
        self._open: dict[str, tuple[int, str]] = {}  # writer -> (seq, created) of its open
        # checkpoints whose record was not there when they came: (newest seq, text, count),
        # for store checkpoints (False) and anchored ones (True)
        self._missing: dict[bool, tuple[int, str, int]] = {}

    def _problem(self, seq: int | None, text: str) -> None:
        report = self.report
        if seq is not None and (report.first_bad is None or seq < report.first_bad):
            report.first_bad = seq
        if len(report.problems) < _MAX_PROBLEMS:
            report.problems.append(self._who + text)
        else:
            report.more_problems += 1

    def _apply_given(self, below: int) -> None:
        while self._given and self._given[-1].seq < below:
            self.seal(self._given.pop())

    def feed(self, rec: Record) -> None:
        self._feed(rec)
        self._apply_given(rec.seq + 1)

    def _feed(self, rec: Record) -> None:
        report = self.report
        if self._prev is None:  # a partial walk starts here
            self._prev = Position(rec.seq - 1, rec.prev_hash)
            report.first_seq = rec.seq
        prev = self._prev
        report.records += 1
        if rec.seq <= prev.seq:
            self._problem(
                rec.seq, f"record {rec.seq}: out of order or duplicated after record {prev.seq}"
            )
            return
        gap = rec.seq > prev.seq + 1
        if gap:
            first = prev.seq + 1
            span = f"record {first}" if first == rec.seq - 1 else f"records {first}..{rec.seq - 1}"
            self._problem(first, f"{span}: missing (deleted; the next one present is {rec.seq})")
        if not rec.intact():
            self._problem(
                rec.seq, f"record {rec.seq}: its content does not match its hash (edited)"
            )
        if rec.chain != self.chain:
            self._problem(rec.seq, f"record {rec.seq}: belongs to another chain ({rec.chain!r})")
        segment = parse_segment(rec)
        if segment is not None and segment.event == "open" and self.chain and rec.seq != 1:
            self._problem(rec.seq, f"record {rec.seq}: a second open record in one chain (forged)")
        if segment is not None and segment.event == "open" and segment.after is not None:
            self._open_segment(rec, segment.writer, segment.after, prev, segment.found)
        elif rec.prev_hash != prev.hash and not gap:
            self._problem(
                rec.seq,
                f"record {rec.seq}: does not follow record {prev.seq} "
                "(inserted, reordered, or its predecessor was replaced)",
            )
        if segment is not None and segment.event == "close":
            self._open.pop(segment.writer, None)
        self._prev = rec.position
        self._remember(self._recent, rec.seq, rec.hash)
        if self._pending is None:
            self._pending = rec.seq
        report.last_seq = rec.seq

    def _open_segment(
        self, rec: Record, writer: str, after: Position, prev: Position, found: tuple[str, ...]
    ) -> None:
        if len(self._open) < _KEEP:
            self._open[writer] = (rec.seq, rec.created)
        for finding in found:
            self._problem(
                rec.seq, f"record {rec.seq}: the writer that started here found: {finding}"
            )
        if rec.prev_hash != after.hash:
            self._problem(
                rec.seq, f"record {rec.seq}: a segment that does not link where it says (forged)"
            )
        elif after == prev:
            return
        elif after.seq < self.report.first_seq - 1:
            pass  # before a partial export: cannot be checked here
        elif self._sealed.get(after.seq) != after.hash:
            self._problem(
                rec.seq,
                f"record {rec.seq}: a segment linked to seq {after.seq}, "
                "which is not a sealed record of this log",
            )
        elif self._pending is not None and self._pending > after.seq:
            self._unsealed(
                self._pending, prev.seq, f", left out by the writer that started at seq {rec.seq}"
            )
        else:
            self._problem(
                rec.seq,
                f"record {rec.seq}: a segment that leaves out records {after.seq + 1}.."
                f"{prev.seq}, sealed ones among them (forged)",
            )
        self._pending = None

    def _unsealed(self, first: int, last: int, why: str = "") -> None:
        span = f"record {first} is" if first == last else f"records {first}..{last} are"
        self._problem(
            first,
            f"{span} not sealed by any checkpoint{why}: appended by someone "
            "without the signing key (or their checkpoints were deleted)",
        )

    @staticmethod
    def _remember(memory: OrderedDict[int, str], seq: int, digest: str) -> None:
        memory[seq] = digest
        if len(memory) > _KEEP:
            memory.popitem(last=False)

    def seal(self, cp: Checkpoint, *, anchor: str | None = None) -> None:
        """Apply a checkpoint (after its record was fed); ``anchor`` names where an anchored
        one came from (``file:line``)."""
        report = self.report
        what = f"anchored checkpoint ({anchor})" if anchor else "checkpoint"
        if anchor:
            report.anchors += 1
        else:
            report.checkpoints += 1
        if cp.seq < report.first_seq:
            return  # before a partial export: not covered
        at = f"{what} at seq {cp.seq} ({cp.created})"
        if not self._check(cp) or cp.chain != self.chain:
            self._problem(
                None, f"{at}: its signature is not valid for a known public key (forged or edited)"
            )
            return
        self._match(cp.seq, cp.hash, at, anchor is not None)

    def claim(self, seq: int, digest: str, where: str) -> None:
        """Apply a head a valid head set names (``where``: which one, for the problems)."""
        if seq >= self.report.first_seq:
            self._match(seq, digest, f"the head set {where}, naming seq {seq},", True)

    def _match(self, seq: int, digest: str, at: str, outside: bool) -> None:
        report = self.report
        held = self._recent.get(seq) or self._sealed.get(seq)
        if held is None and seq <= report.last_seq:
            self._problem(seq, f"{at} seals record {seq}, which is missing")
            return
        if held is None:  # past the end of the log (so far): judged at the end
            kept = self._missing.get(outside)
            newest = seq if kept is None or seq > kept[0] else kept[0]
            text = at if kept is None or seq > kept[0] else kept[1]
            self._missing[outside] = (newest, text, 1 + (kept[2] if kept else 0))
            return
        if held != digest:
            self._problem(
                seq, f"{at} does not match record {seq}: records up to seq {seq} were rewritten"
            )
            return
        self._remember(self._sealed, seq, digest)
        report.last_sealed = max(report.last_sealed, seq)
        if self._pending is not None and self._pending <= seq:
            prev = self._prev
            self._pending = None if prev is None or prev.seq <= seq else seq + 1

    def finish(self) -> VerifyReport:
        self._apply_given(2**63)
        report = self.report
        if self._pending is not None and self._prev is not None:
            self._unsealed(self._pending, self._prev.seq)
        for anchored, (seq, at, count) in self._missing.items():
            if seq > report.last_seq:
                end = report.last_seq
                more = f" (and {count - 1} more)" if count > 1 else ""
                one = seq == end + 1
                span = f"record {seq} was" if one else f"records {end + 1}..{seq} were"
                also = f" together with {'its' if one else 'their'} checkpoints" if anchored else ""
                self._problem(
                    end + 1,
                    f"{at}{more} seals a record past the end of the "
                    f"{'chain' if self.chain else 'log'} (seq {end}): {span} deleted{also}",
                )
        for writer, (seq, created) in list(self._open.items())[-10:]:
            report.notes.append(
                f"the segment of writer {writer} (opened at seq {seq}, {created}) was not "
                "closed: that writer is still running, or it stopped without a clean shutdown"
            )
        return report


def verify(
    records: Iterable[Record],
    checkpoints: Iterable[Checkpoint],
    check_signature: CheckSignature,
    *,
    partial: bool = False,
    chain: str = "",
) -> VerifyReport:
    """Walk the chain from seq 1 (or, ``partial``, from the first record given)."""
    verifier = ChainVerifier(checkpoints, check_signature, partial=partial, chain=chain)
    for rec in records:
        verifier.feed(rec)
    return verifier.finish()
