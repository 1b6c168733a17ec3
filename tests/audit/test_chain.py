"""The hash chain and its verification: any edit, deletion, insertion or reordering is found,
and the first bad record is named; checkpoints catch a rewritten chain; a record no checkpoint
seals fails."""

from __future__ import annotations

from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keyguard.audit.chain import Checkpoint, Record, canonical, chain, link
from keyguard.audit.export import verify_lines
from keyguard.audit.redact import redact_short, redact_text
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.verify import verify
from keyguard.keys.format import generate_key

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))


def records(n: int = 10) -> list[Record]:
    items = [
        (f"2026-01-01T00:00:{i:02d}.000000Z", "request", canonical({"n": i, "status": 200}))
        for i in range(n)
    ]
    return list(chain(1, "0" * 64, items))


def sealed() -> list[Checkpoint]:
    """The checkpoint the writer committed with the last of :func:`records`."""
    return [SIGNER.sign(10, records()[9].hash, "t")]


def test_an_intact_chain_verifies_and_is_sealed() -> None:
    recs = records()
    cps = [SIGNER.sign(5, recs[4].hash, "t1"), SIGNER.sign(10, recs[9].hash, "t2")]
    report = verify(recs, cps, CHECK)
    assert report.ok and report.records == 10 and report.last_sealed == 10
    assert report.unsealed == 0 and report.first_bad is None


def test_edited_record_is_named() -> None:
    recs = records()
    recs[3] = replace(recs[3], data=canonical({"n": 3, "status": 500}))
    report = verify(recs, sealed(), CHECK)
    assert not report.ok and report.first_bad == 4
    assert "record 4" in report.problems[0] and "edited" in report.problems[0]


def test_deleted_record_is_named() -> None:
    recs = records()
    del recs[6]
    report = verify(recs, sealed(), CHECK)
    assert report.first_bad == 7 and "deleted" in report.problems[0]


def test_inserted_record_is_named() -> None:
    recs = records()
    forged = Record(5, recs[4].created, "admin", canonical({"x": 1}), recs[3].hash, "f" * 64)
    recs.insert(4, forged)
    report = verify(recs, sealed(), CHECK)
    assert report.first_bad == 5 and not report.ok


def test_reordered_records_are_named() -> None:
    recs = records()
    a, b = recs[2], recs[3]
    recs[2] = replace(b, seq=3)
    recs[3] = replace(a, seq=4)
    report = verify(recs, sealed(), CHECK)
    assert report.first_bad == 3 and "record 3: does not follow" in "\n".join(report.problems)


def test_a_rewritten_chain_fails_its_checkpoint() -> None:
    recs = records()
    cp = SIGNER.sign(10, recs[9].hash, "t")
    items = [(r.created, r.kind, r.data) for r in recs]
    items[2] = (items[2][0], "request", canonical({"n": 2, "status": 403}))
    rewritten = list(chain(1, "0" * 64, items))  # every hash recomputed: the chain holds
    report = verify(rewritten, [cp], CHECK)
    assert not report.ok and "rewritten" in report.problems[0]


def test_forged_checkpoint_and_deleted_tail() -> None:
    recs = records()
    forger = Signer(Ed25519PrivateKey.generate())
    report = verify(recs, [forger.sign(10, recs[9].hash, "t")], CHECK)
    assert "signature" in report.problems[0]
    report = verify(recs[:8], [SIGNER.sign(10, recs[9].hash, "t")], CHECK)
    assert "deleted" in report.problems[0]


def test_an_unsealed_tail_fails() -> None:
    recs = records()
    report = verify(recs, [SIGNER.sign(6, recs[5].hash, "t")], CHECK)
    assert not report.ok and report.last_sealed == 6 and report.unsealed == 4
    assert report.problems == [
        "records 7..10 are not sealed by any checkpoint: appended by someone without the "
        "signing key (or their checkpoints were deleted)"
    ]
    assert report.first_bad == 7


def test_export_lines_verify_including_a_partial_export() -> None:
    recs = records()
    cp = SIGNER.sign(10, recs[9].hash, "t")
    lines = [canonical(r.to_json()) for r in recs] + [canonical(cp.to_json())]
    assert verify_lines(lines, CHECK).ok
    partial = verify_lines(lines[5:], CHECK)
    assert partial.ok and partial.first_seq == 6 and partial.records == 5
    tampered = lines[:]
    tampered[7] = tampered[7].replace('"status":200', '"status":201')
    report = verify_lines(tampered, CHECK)
    assert report.first_bad == 8


def test_link_covers_position_time_kind_and_predecessor() -> None:
    h = link(1, "t", "request", "0" * 64, "{}")
    assert h != link(2, "t", "request", "0" * 64, "{}")
    assert h != link(1, "u", "request", "0" * 64, "{}")
    assert h != link(1, "t", "admin", "0" * 64, "{}")
    assert h != link(1, "t", "request", "1" * 64, "{}")


def test_redaction_of_client_text() -> None:
    key = generate_key().full
    assert key not in redact_text(f"prompt with {key} inside")
    assert "[REDACTED:keyguard_key]" in redact_text(f"x {key} y")
    ua = f"evil-agent {key}"
    assert key not in redact_short(ua) and redact_short("openai-python/1.0") == "openai-python/1.0"
    assert "0123456789abcdef" * 2 not in redact_short("ua " + "0123456789abcdef" * 2)
