"""Segments, pure: where a writer starts and what it reports (``plan_open``), and how the
verifier reads segments: a skip over unsealed records is reported, a forged segment record
changes nothing, an unclosed segment is a note."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keyguard.audit.chain import START, Checkpoint, Position, Record, canonical, chain
from keyguard.audit.segments import KIND, Tail, close_data, open_data, plan_open
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.verify import verify

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
T = "2026-01-01T00:00:00.000000Z"


def item(kind: str, data: dict[str, object]) -> tuple[str, str, str]:
    return (T, kind, canonical(data))


def seal(rec: Record) -> Checkpoint:
    return SIGNER.sign(rec.seq, rec.hash, T)


def test_a_clean_tail_links_to_its_head() -> None:
    head = Position(7, "a" * 64)
    assert plan_open(Tail(head=head, sealed=head)) == (head, [])
    assert plan_open(Tail(head=START, sealed=START)) == (START, [])


def test_what_a_writer_reports() -> None:
    sealed, head = Position(7, "a" * 64), Position(9, "b" * 64)
    anchored = SIGNER.sign(12, "c" * 64, T)
    tail = Tail(head=head, sealed=sealed, problems=("forged",), anchored=anchored)
    after, found = plan_open(tail, own=Position(11, "d" * 64))
    assert after == sealed
    assert found == [
        "forged",
        "records 8..9 are not sealed (the last signed checkpoint is at seq 7): written by "
        "someone without the signing key; left out of the chain",
        f"the anchor holds a checkpoint at seq 12 ({T}) but the log ends at seq 9: the newest "
        "records were deleted with their checkpoints",
        "records up to seq 11 written by this writer are gone: the log ends at seq 9",
    ]
    own = Position(8, "e" * 64)
    _, found = plan_open(Tail(head=head, sealed=head, own_found="f" * 64), own=own)
    assert found == ["record 8 written by this writer was deleted or replaced"]


def _log() -> tuple[list[Record], list[Checkpoint]]:
    """Writer A: open, two records (sealed), then two records someone appended, then writer
    B's segment, which starts after A's last sealed record, and its close."""
    a = list(chain(1, START.hash, [item(KIND, open_data("A", START, [])), item("admin", {"i": 1}),
                                   item("admin", {"i": 2})]))  # fmt: skip
    forged = list(chain(4, a[-1].hash, [item("admin", {"x": 1}), item("admin", {"x": 2})]))
    found = ["records 4..5 are not sealed"]
    b = list(chain(6, a[-1].hash, [item(KIND, open_data("B", a[-1].position, found)),
                                   item(KIND, close_data("B", 1))]))  # fmt: skip
    return [*a, *forged, *b], [seal(a[0]), seal(a[-1]), seal(b[-1])]


def test_a_skip_over_unsealed_records_is_reported() -> None:
    records, checkpoints = _log()
    report = verify(records, checkpoints, CHECK)
    assert report.problems == [
        "record 6: the writer that started here found: records 4..5 are not sealed",
        "records 4..5 are not sealed by any checkpoint, left out by the writer that started at "
        "seq 6: appended by someone without the signing key (or their checkpoints were deleted)",
    ]
    assert report.first_bad == 4 and report.last_sealed == 7
    assert [n.split(" (")[0] for n in report.notes] == ["the segment of writer A"]  # B closed


def test_a_forged_segment_record_changes_nothing() -> None:
    records, checkpoints = _log()
    fake = list(chain(8, records[2].hash, [item(KIND, open_data("C", records[2].position, []))]))
    report = verify([*records, *fake], checkpoints, CHECK)
    assert (
        "record 8: a segment that leaves out records 4..7, sealed ones among them (forged)"
        in report.problems
    )
    assert report.problems[-1].startswith("record 8 is not sealed by any checkpoint")
    fake = list(chain(8, records[-1].hash, [item(KIND, open_data("C", records[2].position, []))]))
    report = verify([*records, *fake], checkpoints, CHECK)
    assert "record 8: a segment that does not link where it says (forged)" in report.problems
    assert report.problems[-1].startswith("record 8 is not sealed by any checkpoint")
    elsewhere = Position(2, "9" * 64)
    fake = list(chain(8, elsewhere.hash, [item(KIND, open_data("C", elsewhere, []))]))
    report = verify([*records, *fake], checkpoints, CHECK)
    assert "record 8: a segment linked to seq 2, which is not a sealed record of this log" in (
        report.problems
    )
