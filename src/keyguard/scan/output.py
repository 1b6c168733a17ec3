"""Report formats: human text, JSON lines, SARIF 2.1.0. None of them carries a secret."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from keyguard.scan.findings import KINDS, Finding

__all__ = ["FORMATS", "render", "render_jsonl", "render_sarif", "render_text"]

FORMATS = ("text", "jsonl", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"high": "error", "medium": "warning", "low": "note"}


def render_text(findings: Sequence[Finding]) -> str:
    lines = []
    for f in findings:
        where = f"{f.file}:{f.line}" + (f"-{f.end_line}" if f.end_line != f.line else "")
        extra = [] if f.encoding == "plain" else [f.encoding]
        if f.commit:
            extra.append(f"commit {f.commit[:12]}")
        suffix = f" [{', '.join(extra)}]" if extra else ""
        lines.append(
            f"{where}: {KINDS[f.kind].title} ({f.confidence}) {f.preview}{suffix}"
            f" — {f.detail} fp:{f.fingerprint[:16]}"
        )
    return "\n".join(lines) + ("\n" if lines else "")


def render_jsonl(findings: Sequence[Finding]) -> str:
    return "".join(json.dumps(f.to_dict(), sort_keys=True) + "\n" for f in findings)


def _rule(kind: str) -> dict[str, Any]:
    k = KINDS[kind]
    return {
        "id": k.id,
        "name": "".join(part.title() for part in k.id.split("_")),
        "shortDescription": {"text": k.title},
        "fullDescription": {"text": k.description},
        "defaultConfiguration": {"level": "error"},
        "help": {"text": f"{k.description} Remove it from the file and rotate it."},
        "properties": {"tags": ["security", "secret"]},
    }


def _invocation(notes: Sequence[str]) -> dict[str, Any]:
    """What was not scanned (shallow history, missing objects), as tool notifications that
    code-scanning UIs show next to the results."""
    return {
        "executionSuccessful": True,
        "toolExecutionNotifications": [
            {"level": "warning", "message": {"text": note}} for note in notes
        ],
    }


def render_sarif(
    findings: Sequence[Finding], version: str = "0.1.0", notes: Sequence[str] = ()
) -> str:
    kinds = sorted(KINDS)
    index = {k: i for i, k in enumerate(kinds)}
    results = []
    for f in findings:
        region = {"startLine": f.line, "endLine": f.end_line}
        result: dict[str, Any] = {
            "ruleId": f.kind,
            "ruleIndex": index[f.kind],
            "level": _LEVEL.get(f.confidence, "warning"),
            "message": {
                "text": f"{KINDS[f.kind].title} ({f.confidence} confidence): {f.preview}"
                + (f", {f.encoding}" if f.encoding != "plain" else "")
                + (f"; {f.detail}" if f.detail else "")
            },
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.file, "uriBaseId": "%SRCROOT%"},
                        "region": region,
                    }
                }
            ],
            "partialFingerprints": {"keyguardSecretFingerprint/v1": f.fingerprint},
            "properties": {"confidence": f.confidence, "encoding": f.encoding},
        }
        if f.commit:
            result["properties"]["commit"] = f.commit
        results.append(result)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "keyguard-scan",
                        "semanticVersion": version,
                        "rules": [_rule(k) for k in kinds],
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": "file:///"}},
                "columnKind": "unicodeCodePoints",
                "invocations": [_invocation(notes)],
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def render(findings: Sequence[Finding], fmt: str, notes: Sequence[str] = ()) -> str:
    """The report; ``notes`` (what was not scanned) go into SARIF, and to stderr in any case."""
    if fmt == "jsonl":
        return render_jsonl(findings)
    if fmt == "sarif":
        return render_sarif(findings, notes=notes)
    return render_text(findings)
