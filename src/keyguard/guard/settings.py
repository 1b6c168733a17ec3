"""``guardrails:`` in the configuration: the local detectors' rules and the model-based layer.

The actions (block, redact, alert, log) are per role, in the policy (``keyguard.guard.actions``);
this section says what the detectors look for and how the model-based layer is reached:
operators' named blocklists and patterns, the regions phone numbers are read in, and the
bounds on how much text one request may make the detectors read.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from keyguard.core.settings import Frozen
from keyguard.guard.content_safety_settings import ContentSafetySettings

__all__ = ["BlocklistRule", "GuardSettings", "PatternRule", "BUILTIN_CATEGORIES"]

_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
#: categories the built-in detectors report (a custom rule may not take one of these names)
BUILTIN_CATEGORIES = frozenset(
    {
        "payment_card", "iban", "us_ssn", "de_tax_id", "fr_nir", "es_dni", "es_nie",
        "it_fiscal_code", "nl_bsn", "gb_nino", "email", "phone", "ip_address", "unscanned",
        "password", "named_secret",
    }
)  # fmt: skip
Name = Annotated[str, Field(min_length=1, max_length=63)]


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"rule name {name!r} must be lower case letters, digits, '_', '.' or '-' "
            "(starting with a letter)"
        )
    if name in BUILTIN_CATEGORIES:
        raise ValueError(f"rule name {name!r} is a built-in category: choose another name")
    return name


class BlocklistRule(Frozen):
    """Terms matched whole-word and case-insensitively (``Project Falcon`` matches ``project
    falcon`` but not ``projectfalcon``)."""

    name: Name
    terms: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]],
                     Field(min_length=1, max_length=10_000)]  # fmt: skip

    _name = field_validator("name")(_check_name)

    @field_validator("terms")
    @classmethod
    def _terms(cls, terms: list[str]) -> list[str]:
        if any(not t.strip() for t in terms):
            raise ValueError("a blocklist term is blank: remove it")
        return terms


class PatternRule(Frozen):
    """A regular expression in RE2 syntax (linear time: no backreferences or look-around)."""

    name: Name
    pattern: Annotated[str, Field(min_length=1, max_length=1000)]

    _name = field_validator("name")(_check_name)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, pattern: str) -> str:
        from keyguard.guard.custom import compile_pattern

        compile_pattern(pattern)  # raises ValueError naming the problem
        return pattern


class GuardSettings(Frozen):
    """The guardrails' configuration."""

    # -- in the gateway (the actions are per role, in the policy) --------------------------
    enabled: bool = True  # false: the gateway reads no request or answer for guardrails
    stream_window_chars: int = Field(default=128, ge=16, le=65_536)  # held back per choice
    stream_context_chars: int = Field(default=128, ge=0, le=65_536)  # read before it

    #: Azure AI Content Safety, the model-based layer (none: not used)
    content_safety: ContentSafetySettings | None = None

    blocklists: Annotated[list[BlocklistRule], Field(max_length=100)] = []
    patterns: Annotated[list[PatternRule], Field(max_length=100)] = []
    #: regions whose national phone formats are read (numbers written with +CC always are)
    phone_regions: Annotated[list[str], Field(min_length=1, max_length=20)] = [
        "US", "GB", "DE", "FR", "ES", "IT", "NL",
    ]  # fmt: skip
    #: characters of one text read; the rest is reported as ``unscanned``
    max_text_chars: Annotated[int, Field(ge=1_000, le=50_000_000)] = 1_000_000
    #: characters of all of one request's texts read; beyond it texts are ``unscanned``
    max_request_chars: Annotated[int, Field(ge=1_000, le=200_000_000)] = 4_000_000
    #: matches kept per text (a text with more is hostile or a dump: the first ones are kept)
    max_matches: Annotated[int, Field(ge=1, le=100_000)] = 1_000

    @field_validator("phone_regions")
    @classmethod
    def _regions(cls, regions: list[str]) -> list[str]:
        import phonenumbers

        known = phonenumbers.SUPPORTED_REGIONS
        bad = [r for r in regions if r.upper() not in known]
        if bad:
            raise ValueError(f"unknown phone region(s) {bad}: use ISO 3166 codes such as US, DE")
        return [r.upper() for r in regions]

    @model_validator(mode="after")
    def _unique_names(self) -> GuardSettings:
        names = [r.name for r in self.blocklists] + [r.name for r in self.patterns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"guardrail rule names must be unique: {dupes} used twice")
        return self
