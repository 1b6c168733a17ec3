"""Segments, pure: how the verifier reads segments in the shared chain of earlier versions
(several writers in one chain): a skip over unsealed records is reported, a forged segment
record changes nothing, an unclosed segment is a note."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keyguard.audit.chain import START, Checkpoint, Position, Record, canonical, chain
from keyguard.audit.segments import KIND, close_data, open_data
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.verify import verify

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
T = "2026-01-01T00:00:00.000000Z"


def item(kind: str, data: dict[str, object]) -> tuple[str, str, str]:
    return (T, kind, canonical(data))


def seal(rec: Record) -> Checkpoint:
    return SIGNER.sign(rec.seq, rec.hash, T)


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
