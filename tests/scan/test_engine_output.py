"""Findings and every output format never contain a secret; formats are well-formed."""

from __future__ import annotations

import json

import pytest

from keyguard.scan import testkeys
from keyguard.scan.findings import KINDS, redact
from keyguard.scan.output import render

from .conftest import scan

SECRETS = [
    testkeys.generate("AZURE"),
    testkeys.generate("KGK"),
    testkeys.generate("SK"),
    testkeys.generate("ENTRA"),
    testkeys.generate("JWT"),
    testkeys.generate("LEGACY"),
]


def _text() -> str:
    lines = [f'v{i} = "{s}"' for i, s in enumerate(SECRETS[:-1])]
    lines.append(f'AZURE_OPENAI_API_KEY = "{SECRETS[-1]}"')
    return "\n".join(lines) + "\n"


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
