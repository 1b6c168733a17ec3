"""Baselines: accept known findings by fingerprint, so only new ones fail a build.

A baseline is a JSON file listing fingerprints (and, for people reading it, kind, file and
line; never the secret). A finding is "known" when its fingerprint is listed, wherever it has
moved since. The file records the fingerprint key's public id; comparing against a baseline
made with another key is refused, since no fingerprint could match.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from keyguard.errors import ConfigurationError
from keyguard.scan.findings import Finding

__all__ = ["Baseline", "load_baseline", "write_baseline"]

VERSION = 1


@dataclass(frozen=True, slots=True)
class Baseline:
    key_id: str
    fingerprints: frozenset[str]

    def new_findings(self, findings: Sequence[Finding]) -> list[Finding]:
        return [f for f in findings if f.fingerprint not in self.fingerprints]


def load_baseline(path: Path, key_id: str) -> Baseline:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"--baseline: cannot read {path}") from exc
    except ValueError as exc:
        raise ConfigurationError(f"--baseline: {path} is not JSON") from exc
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise ConfigurationError(f"--baseline: {path} is not a keyguard scan baseline (v{VERSION})")
    if doc.get("fingerprint_key_id") != key_id:
        raise ConfigurationError(
            f"--baseline: {path} was written with another fingerprint key "
            f"(id {doc.get('fingerprint_key_id')}, current {key_id})"
        )
    entries = doc.get("findings", [])
    fps = frozenset(
        str(e["fingerprint"]) for e in entries if isinstance(e, dict) and "fingerprint" in e
    )
    return Baseline(key_id, fps)


def write_baseline(path: Path, findings: Sequence[Finding], key_id: str) -> None:
    seen: dict[str, Finding] = {}
    for f in findings:
        seen.setdefault(f.fingerprint, f)
    doc = {
        "version": VERSION,
        "tool": "keyguard-scan",
        "fingerprint_key_id": key_id,
        "findings": [
            {"fingerprint": fp, "kind": f.kind, "file": f.file, "line": f.line}
            for fp, f in sorted(seen.items(), key=lambda item: (item[1].file, item[1].line))
        ],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
