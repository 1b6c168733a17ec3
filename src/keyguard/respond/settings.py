"""Response settings (``monitor.respond`` in the config): what happens when a rule fires.

``policy`` maps a rule and a severity to actions. Every incident is always recorded (incidents
table and audit log); the actions add to that:

* ``alert``            send it to every webhook whose ``min_severity`` it reaches;
* ``throttle``         refuse the subject (key, or source network) with 429 for ``throttle_s``,
                       renewed while the behaviour goes on;
* ``block_source``     refuse the finding's source address with 429 for ``throttle_s`` (the
                       response to stuffing: the caller has no valid key to throttle);
* ``suspend_key``      suspend the key (``keyguard keys resume KEY_ID`` lifts it);
* ``suspend_app``      suspend every key of the app (``keyguard keys resume --app APP``);
* ``rotate_upstream``  ask the rotation engine to rotate the upstream key named by the finding
                       (or every upstream when the finding names none).

A rule given in ``policy`` replaces that rule's defaults entirely.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ..core.settings import Frozen
from ..detect.settings import RULES

__all__ = ["RespondSettings", "WebhookSettings", "Action", "DEFAULT_POLICY", "SEVERITIES"]

Action = Literal[
    "alert", "throttle", "block_source", "suspend_key", "suspend_app", "rotate_upstream"
]
SeverityName = Literal["low", "medium", "high", "critical"]
SEVERITIES = ("low", "medium", "high", "critical")

DEFAULT_POLICY: dict[str, dict[SeverityName, list[Action]]] = {
    "decoy": {"critical": ["alert"]},  # decoys are refused anyway; suspending would tell
    "raw_azure_key": {"high": ["alert"]},
    "key_probe": {"medium": ["alert"], "high": ["alert", "suspend_key"]},
    "stuffing": {"medium": ["alert"], "high": ["alert", "block_source"]},
    "enumeration": {"high": ["alert", "throttle"]},
    "network": {"medium": ["alert"], "high": ["alert", "throttle"]},
    "velocity": {"high": ["alert", "throttle"]},
    "reseller": {"high": ["alert", "throttle"]},
    "repetition": {"high": ["alert"]},
    "unusual_time": {"low": [], "medium": ["alert"]},
    "guardrail_repeat": {"high": ["alert"], "critical": ["alert", "throttle"]},
    "burst": {"medium": ["alert"]},
    "model_mix": {"medium": ["alert"]},
    "sustained": {"high": ["alert", "throttle"]},
}

# Webhook hosts whose URLs embed a secret token: such a URL belongs in the vault.
_SECRET_URL_HOSTS = ("hooks.slack.com", "webhook.office.com", "logic.azure.com", "discord.com")


class WebhookSettings(Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    format: Literal["generic", "slack", "teams"] = "generic"
    url: str | None = None  # only for URLs that hold no secret
    vault: str | None = None  # a vault secret holding the URL (Slack and Teams URLs are secrets)
    min_severity: SeverityName = "medium"
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    attempts: int = Field(default=5, ge=1, le=20)

    @field_validator("url")
    @classmethod
    def _plain_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("a webhook url must be an http(s) URL")
        host = parts.hostname.lower()
        if (
            parts.username
            or parts.password
            or parts.query
            or any(host == h or host.endswith("." + h) for h in _SECRET_URL_HOSTS)
        ):
            raise ValueError(
                "this webhook URL carries a secret; store it with 'keyguard vault put "
                "alerts/NAME' and refer to it as 'vault: alerts/NAME'"
            )
        return v

    @model_validator(mode="after")
    def _one_source(self) -> WebhookSettings:
        if (self.url is None) == (self.vault is None):
            raise ValueError("give exactly one of 'url' or 'vault' for a webhook")
        return self


class RespondSettings(Frozen):
    automatic: bool = True  # off: incidents are recorded and alerted, never acted on
    throttle_s: float = Field(default=900, gt=0)
    blocks_poll_s: float = Field(default=2.0, gt=0, le=60)  # how fast replicas see blocks
    policy: dict[str, dict[SeverityName, list[Action]]] = {}
    webhooks: list[WebhookSettings] = []

    @field_validator("policy")
    @classmethod
    def _known_rules(
        cls, v: dict[str, dict[SeverityName, list[Action]]]
    ) -> dict[str, dict[SeverityName, list[Action]]]:
        for rule in v:
            if rule not in RULES:
                raise ValueError(f"unknown rule {rule!r}; rules: {', '.join(RULES)}")
        return v

    def actions(self, rule: str, severity: str) -> list[Action]:
        table = self.policy.get(rule, DEFAULT_POLICY.get(rule, {}))
        return list(table.get(severity, []))  # type: ignore[call-overload]
