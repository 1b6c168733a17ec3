"""The file anchor: checkpoints and head sets appended one JSON line each; the newest valid
head set found at the end of the file whatever else is there; a careless path refused at
start, naming the setting."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keyguard.audit.anchor import FileAnchor, newest_anchored, read_anchor
from keyguard.audit.chain import Position
from keyguard.audit.heads import sign_heads
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.errors import ConfigurationError

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
T = "2026-01-01T00:00:00.000000Z"


def test_checkpoints_are_appended_and_the_newest_valid_one_found(tmp_path: Path) -> None:
    path = tmp_path / "anchors.jsonl"
    anchor = FileAnchor(str(path))
    later = "2026-01-01T00:00:10.000000Z"
    first = sign_heads(SIGNER, T, "w1", [("w1", Position(5, "a" * 64))])
    second = sign_heads(SIGNER, later, "w1", [("w1", Position(9, "b" * 64))])
    anchor.write_lines([SIGNER.sign(5, "a" * 64, T, "w1").to_json(), first.to_json()])
    anchor.write_lines([second.to_json()])
    anchor.close()
    forger = Signer(Ed25519PrivateKey.generate())
    forged = sign_heads(forger, "2027-01-01T00:00:00.000000Z", "w1", [("w1", Position(50, "c"))])
    with path.open("a") as fh:  # what someone who can write the file adds
        fh.write(orjson.dumps(forged.to_json()).decode() + "\n")
        fh.write("{not json}\n")
        fh.write('{"type":"checkpoint","seq":60}\n')  # not a checkpoint
        fh.write('Dec  2 10:00:00 host keyguard-audit: {"type":"checkpoint","seq":70,"hash":"')
    found = newest_anchored(str(path), CHECK)
    assert found == second
    assert [n for n, _ in read_anchor(path.read_text().splitlines())] == [1, 2, 3, 4]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_syslog_copy_is_an_anchor(tmp_path: Path) -> None:
    cp = SIGNER.sign(3, "d" * 64, T)
    line = "Dec  2 10:00:00 host keyguard-audit: " + orjson.dumps(cp.to_json()).decode()
    [(number, read)] = list(read_anchor([line]))
    assert number == 1 and read == cp


def test_an_anchor_folder_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="monitor.audit.anchor_file"):
        FileAnchor(str(tmp_path / "missing" / "anchors.jsonl"))
    assert newest_anchored(str(tmp_path / "none.jsonl"), CHECK) is None
