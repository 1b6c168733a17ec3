"""``guardrails.content_safety``: how Keyguard reaches Azure AI Content Safety and what it asks.

::

    guardrails:
      content_safety:
        endpoint: https://contoso-safety.cognitiveservices.azure.com
        credential: {managed_identity: {}}         # or {vault: content-safety/key}
        prompt_shields: {user: true, documents: true}
        harm: {Hate: 4, SelfHarm: 4, Sexual: 4, Violence: 4}   # flag at this severity or above
        blocklists: [competitors]
        mode: before                                # or concurrent
        timeout_ms: 1500
        on_error: block                             # or allow

Nothing here is a secret: the credential is a reference, as an upstream's is (a managed
identity, or a key in the local vault or Azure Key Vault). The endpoint must be ``https://``;
plain ``http://`` only to a loopback address and only with ``insecure_http: true`` (a local
emulator).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ..core.settings import Frozen, is_loopback_host, service_url
from ..upstream.settings import CredentialRef
from .actions import Action

__all__ = ["ContentSafetySettings", "PromptShieldSettings", "HARM_CATEGORIES"]

HarmCategory = Literal["Hate", "SelfHarm", "Sexual", "Violence"]
HARM_CATEGORIES: tuple[HarmCategory, ...] = ("Hate", "SelfHarm", "Sexual", "Violence")
_BLOCKLIST = re.compile(r"[0-9A-Za-z._~-]{1,64}")  # Azure's rule for blocklist names
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")


class PromptShieldSettings(Frozen):
    """Prompt Shields on the user's prompts (jailbreaks) and on documents (tool results,
    retrieved text: indirect attacks)."""

    user: bool = True
    documents: bool = True


class ContentSafetySettings(Frozen):
    endpoint: str
    credential: CredentialRef
    #: plain http:// to a loopback address (a local emulator); never to anything else
    insecure_http: bool = False
    #: a CA bundle to trust for an https:// endpoint instead of the system store
    ca_file: str | None = None
    api_version: str = "2024-09-01"
    prompt_shields: PromptShieldSettings = PromptShieldSettings()
    #: Azure category -> the severity (1-7) at or above which a text is flagged; absent: not
    #: analysed. Empty (and no blocklists): no text:analyze call at all.
    harm: dict[HarmCategory, int] = {}
    blocklists: list[str] = []
    output_type: Literal["FourSeverityLevels", "EightSeverityLevels"] = "FourSeverityLevels"
    #: before: the verdict before forwarding; concurrent: forward at once, hold the answer
    mode: Literal["before", "concurrent"] = "before"
    timeout_ms: int = Field(default=1500, ge=50, le=30_000)
    #: the service cannot answer in time: block (503, the default) or allow (served, recorded)
    on_error: Literal["block", "allow"] = "block"
    #: what a flag does for a role with no guardrails of its own in the policy (block, alert,
    #: log, off; redact counts as block: a verdict has nothing to redact)
    on_attack: Action = "block"
    on_harm: Action = "block"
    #: calls to the service in flight at once, for the whole gateway
    max_concurrency: int = Field(default=64, ge=1, le=4096)
    #: characters of a request checked at most (split in 10,000-character calls); a request
    #: that carries more is refused (400), never passed unchecked
    max_chars: int = Field(default=50_000, ge=1000, le=1_000_000)
    max_response_bytes: int = Field(default=65_536, ge=1024, le=1 << 24)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_shape(cls, v: str) -> str:
        return service_url(v, "endpoint", "https://NAME.cognitiveservices.azure.com")

    @field_validator("harm")
    @classmethod
    def _thresholds(cls, v: dict[HarmCategory, int]) -> dict[HarmCategory, int]:
        for category, threshold in v.items():
            if isinstance(threshold, bool) or not 1 <= threshold <= 7:
                raise ValueError(
                    f"harm.{category}: a severity threshold is 1-7 (Azure's severities 0-7; "
                    f"0 would flag every text), got {threshold}"
                )
        return v

    @field_validator("blocklists")
    @classmethod
    def _blocklists(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _BLOCKLIST.fullmatch(name):
                raise ValueError(
                    f"blocklist name {name[:70]!r}: 1-64 letters, digits or . _ ~ - (Azure's rule)"
                )
        return v

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, v: str) -> str:
        if not _API_VERSION.fullmatch(v):
            raise ValueError("api_version must look like 2024-09-01")
        return v

    @model_validator(mode="after")
    def _safe(self) -> ContentSafetySettings:
        parts = urlsplit(self.endpoint)
        if parts.scheme == "http":
            if not is_loopback_host(parts.hostname or ""):
                raise ValueError(
                    "endpoint must be https:// (the credential would travel in clear); plain "
                    "http:// is allowed only to a loopback address with insecure_http: true"
                )
            if not self.insecure_http:
                raise ValueError(
                    "a plain http:// endpoint needs insecure_http: true (a local emulator only)"
                )
        if not (self.prompt_shields.user or self.prompt_shields.documents or self.analyses):
            raise ValueError(
                "content_safety checks nothing: enable prompt_shields, set harm thresholds or "
                "name blocklists (or remove the section)"
            )
        return self

    @property
    def analyses(self) -> bool:
        """Whether text:analyze is called (harm thresholds or blocklists)."""
        return bool(self.harm or self.blocklists)
