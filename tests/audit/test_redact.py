"""What a client controls and the audit keeps (user agents, client fingerprints) is recorded
with every secret the scanner recognises redacted, whatever its kind."""

from __future__ import annotations

import random

import pytest

from keyguard.audit.redact import redact_short, redact_text
from keyguard.guard.samples import token

KINDS = [
    "aws_access_key", "google_api_key", "github_token", "github_pat", "gitlab_token",
    "slack_token", "slack_webhook", "stripe_key", "npm_token", "huggingface_token",
    "anthropic_key", "sendgrid_key",
]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_a_secret_of_any_scanned_kind_in_a_user_agent_is_never_recorded(kind: str) -> None:
    value = token(random.Random(kind), kind)
    agent = f"curl/8.5.0 ({value}) python-requests/2.32"
    recorded = redact_short(agent)
    assert value not in recorded and "[REDACTED:" in recorded
    assert recorded.startswith("curl/8.5.0 (")  # the rest of the agent is kept


def test_a_private_key_in_recorded_content_is_redacted() -> None:
    pem = token(random.Random(1), "private_key")
    body = pem.splitlines()[1]
    assert body not in redact_text(f"here is my key:\n{pem}\nthanks")


def test_ordinary_user_agents_are_kept_as_they_are() -> None:
    for agent in ("OpenAI/Python 1.54.0", "AsyncAzureOpenAI/Python 1.54.0", "Mozilla/5.0 (X11)"):
        assert redact_short(agent) == agent
