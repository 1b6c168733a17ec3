"""Baselines, fingerprint keys, and the leak-to-rotation matcher and planner (pure)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keyguard.errors import ConfigurationError
from keyguard.scan import testkeys
from keyguard.scan.baseline import load_baseline, write_baseline
from keyguard.scan.fingerprint import DEFAULT_FINGERPRINT_KEY, fingerprint, resolve_fingerprint_key
from keyguard.scan.respond import ManagedSecretRef, match_findings, plan_responses

from .conftest import KEY, scan


def test_fingerprint_is_hmac_sha256_of_the_exact_value() -> None:
    assert fingerprint("abc", b"k") == hmac.new(b"k", b"abc", hashlib.sha256).hexdigest()


def test_fingerprint_key_resolution(tmp_path: Path) -> None:
    key_file = tmp_path / "fp.key"
    key_file.write_text("00" * 32 + "\n")
    assert resolve_fingerprint_key(key_file, {}).key == bytes(32)
    assert resolve_fingerprint_key(None, {"KEYGUARD_FINGERPRINT_KEY": "s3cr3t"}).key == b"s3cr3t"
    assert resolve_fingerprint_key(None, {}, b"cfg").source == "config"
    default = resolve_fingerprint_key(None, {})
    assert (default.key, default.source) == (DEFAULT_FINGERPRINT_KEY, "default")
    assert len(default.key_id) == 16
    (tmp_path / "empty").write_text(" ")
    with pytest.raises(ConfigurationError):
        resolve_fingerprint_key(tmp_path / "empty", {})
    with pytest.raises(ConfigurationError):
        resolve_fingerprint_key(tmp_path / "missing", {})


def test_baseline_round_trip_accepts_known_findings(tmp_path: Path) -> None:
    key1, key2 = testkeys.generate("AZURE"), testkeys.generate("AZURE")
    old = scan(f"a = '{key1}'\n")
    path = tmp_path / "baseline.json"
    write_baseline(path, old, "kid")
    assert key1 not in path.read_text()
    moved = scan(f"x = 1\n\nb = '{key1}'\nc = '{key2}'\n")
    new = load_baseline(path, "kid").new_findings(moved)
    assert [f.line for f in new] == [4]


def test_baseline_errors(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    write_baseline(path, [], "kid")
    with pytest.raises(ConfigurationError, match="another fingerprint key"):
        load_baseline(path, "other")
    path.write_text("not json")
    with pytest.raises(ConfigurationError):
        load_baseline(path, "kid")
    path.write_text("{}")
    with pytest.raises(ConfigurationError):
        load_baseline(path, "kid")


def test_match_and_plan() -> None:
    upstream = testkeys.generate("LEGACY")
    app_key = testkeys.generate("KGK")
    other = testkeys.generate("AZURE")
    text = (
        f"AZURE_OPENAI_API_KEY={upstream}\nKEYGUARD_KEY={app_key}\nX={other}\n"
        f"AZURE_OPENAI_API_KEY_COPY={upstream}\n"
    )
    findings = scan(text, ".env")
    managed = {
        fingerprint(upstream, KEY): ManagedSecretRef("upstream", "upstream/prod-eastus"),
        fingerprint(app_key, KEY): ManagedSecretRef("keyguard", "AbCdEfGhIjKl"),
    }
    matches = match_findings(findings, managed)
    assert [m.managed.ref for m in matches] == [
        "upstream/prod-eastus",
        "AbCdEfGhIjKl",
        "upstream/prod-eastus",
    ]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    actions, events = plan_responses(matches, now)
    assert [(a.action, a.ref, a.location) for a in actions] == [
        ("rotate_upstream", "upstream/prod-eastus", ".env:1"),
        ("revoke_keyguard_key", "AbCdEfGhIjKl", ".env:2"),
    ]
    assert len(events) == 3 and all(e.created == now for e in events)
    assert events[0].name == "secret.leak_detected"
    rotate, _ = plan_responses(matches[1:2], now, keyguard_action="rotate")
    assert rotate[0].action == "rotate_keyguard_key"
