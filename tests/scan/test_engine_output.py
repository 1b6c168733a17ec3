"""Findings and every output format never contain a secret; formats are well-formed."""

from __future__ import annotations

import json

import pytest

from keyguard.scan import testkeys
from keyguard.scan.findings import KINDS, redact
from keyguard.scan.output import render

from .conftest import scan

_LINES = [  # every kind, in a line that reports it
    ("AZURE", 'v = "{s}"'),
    ("KGK", 'v = "{s}"'),
    ("SK", 'v = "{s}"'),
    ("ENTRA", 'v = "{s}"'),
    ("JWT", 'v = "{s}"'),
    ("STORAGE", "AZURE_STORAGE_KEY={s}"),
    ("COSMOS_ID", 'v = "{s}"'),
    ("SHARED", "c = 'Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey={s}'"),
    ("SAS", "u = 'https://a.blob.core.windows.net/c?sv=2022-11-02&sig={s}'"),
    ("LEGACY", 'AZURE_OPENAI_API_KEY = "{s}"'),
]
SECRETS = [testkeys.generate(gen) for gen, _ in _LINES]


def _text() -> str:
    return "\n".join(line.format(s=s) for (_, line), s in zip(_LINES, SECRETS, strict=True)) + "\n"


def test_redact_never_shows_more_than_four_characters() -> None:
    assert redact("abcdefghijklmnopqrstuvwxyz") == "abcd…[26 chars]"
    assert redact("short") == "…[5 chars]"


@pytest.mark.parametrize("fmt", ["text", "jsonl", "sarif"])
def test_outputs_contain_no_secret(fmt: str) -> None:
    findings = scan(_text())
    assert len(findings) == len(SECRETS)
    report = render(findings, fmt)
    for secret in SECRETS:
        assert secret not in report
        assert secret[4:20] not in report
        assert secret not in repr(findings)


def test_jsonl_fields() -> None:
    findings = scan(_text(), "src/app.py")
    rows = [json.loads(line) for line in render(findings, "jsonl").splitlines()]
    assert len(rows) == len(findings)
    for row in rows:
        assert {"file", "line", "end_line", "kind", "confidence", "fingerprint", "preview"} <= set(
            row
        )
        assert row["file"] == "src/app.py"
        assert len(row["fingerprint"]) == 64
        assert "commit" not in row


def test_sarif_2_1_0_structure() -> None:
    findings = scan(_text(), "src/app.py")
    doc = json.loads(render(findings, "sarif"))
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert {r["id"] for r in rules} == set(KINDS)
    assert len(run["results"]) == len(findings)
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        loc = result["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == "src/app.py"
        assert loc["region"]["startLine"] >= 1
        assert len(result["partialFingerprints"]["keyguardSecretFingerprint/v1"]) == 64
        assert result["level"] in {"error", "warning", "note"}


def test_text_output_lists_location_kind_and_preview() -> None:
    findings = scan(_text(), "src/app.py")
    text = render(findings, "text")
    assert text.count("\n") == len(findings)
    assert "src/app.py:1: Azure OpenAI key (high)" in text
