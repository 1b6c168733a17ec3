"""``guardrails.content_safety`` as a careless operator writes it: every mistake is one line at
start-up that names the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keyguard.config import settings_from_mapping
from keyguard.errors import ConfigurationError
from tests.support.settings import keyguard_config

GOOD: dict[str, Any] = {
    "endpoint": "https://contoso-safety.cognitiveservices.azure.com/",
    "credential": {"managed_identity": {}},
    "harm": {"Hate": 4, "Violence": 6},
    "blocklists": ["competitors"],
}


def _load(tmp_path: Path, **changes: Any) -> Any:
    section = {**GOOD, **changes}
    section = {k: v for k, v in section.items() if v is not None}
    config = keyguard_config(tmp_path, guardrails={"content_safety": section})
    return settings_from_mapping(config).guardrails.content_safety


def test_a_good_section(tmp_path: Path) -> None:
    cs = _load(tmp_path)
    assert cs.endpoint == "https://contoso-safety.cognitiveservices.azure.com"
    assert cs.mode == "before" and cs.on_error == "block" and cs.timeout_ms == 1500
    assert cs.credential.kind == "managed_identity"
    assert cs.credential.managed_identity.scope == "https://cognitiveservices.azure.com/.default"


def test_loopback_http_with_the_flag(tmp_path: Path) -> None:
    cs = _load(tmp_path, endpoint="http://127.0.0.1:8090", insecure_http=True)
    assert cs.endpoint == "http://127.0.0.1:8090"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"endpoint": "http://safety.example.com"}, "must be https://"),
        ({"endpoint": "http://safety.example.com", "insecure_http": True}, "must be https://"),
        ({"endpoint": "http://127.0.0.1:8090"}, "insecure_http: true"),
        ({"endpoint": "ftp://x"}, "https:// URL"),
        ({"endpoint": "https://u:p@x.example.com"}, "user info"),
        ({"credential": None}, "credential"),
        ({"credential": {"env": "CS_KEY"}}, "insecure: true"),
        ({"harm": {"Hate": 0}}, "1-7"),
        ({"harm": {"Hate": 8}}, "1-7"),
        ({"harm": {"Spam": 4}}, "harm.Spam"),
        ({"blocklists": ["no spaces"]}, "blocklist name"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"on_error": "maybe"}, "on_error"),
        ({"mode": "after"}, "mode"),
        (
            {"harm": {}, "blocklists": [], "prompt_shields": {"user": False, "documents": False}},
            "checks nothing",
        ),
    ],
)
def test_mistakes_are_one_line_naming_the_fix(
    tmp_path: Path, changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        _load(tmp_path, **changes)
    message = str(refused.value)
    assert named in message and "\n" not in message
    assert "guardrails.content_safety" in message.split(": ", 2)[1]  # where, then what


def test_a_key_in_the_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="plaintext secrets"):
        _load(tmp_path, credential={"api_key": "0123456789abcdef0123456789abcdef"})
