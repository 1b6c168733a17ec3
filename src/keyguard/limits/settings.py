"""The ``limits:`` section of the configuration: rules, teams, budgets, prices, backend.

::

    limits:
      backend: redis://127.0.0.1:6379/0      # default: memory (one process)
      on_backend_failure: refuse              # or: local (each replica limits on its own)
      default_max_tokens: 4096                # injected when an app sets no max_tokens
      teams:
        payments: [billing-bot, invoice-bot]
      rules:
        - {scope: key, tpm: 20000, rpm: 120}
        - {scope: app, tpm: 50000, concurrent: 20, tokens_per_day: 5000000}
        - {scope: app, name: billing-bot, tpm: 200000}     # overrides the line above for one app
        - {scope: deployment, name: gpt-4o, tpm: 450000, rpm: 2700}
      budgets:
        - {scope: team, name: payments, per_day: 50, per_month: 1000, soft_percent: 80}
        - {scope: key, per_day: 5}                          # every key, unless named below
        - {scope: key, name: 4fT9qZ1mB7xK, per_day: 20}     # one key id
      prices:                                 # currency per 1,000,000 tokens
        gpt-4o: {input: 2.50, cached_input: 1.25, output: 10.00}

Every rule that applies to a request is enforced; for one scope, a rule that names the key,
app, team or deployment replaces the unnamed rule of that scope for it. Nothing here is read
per request: :mod:`keyguard.limits.rules` compiles it once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ..core.settings import Frozen

__all__ = ["LimitSettings", "LimitRule", "BudgetRule", "Price", "Scope"]

Scope = Literal["key", "app", "team", "deployment", "global"]

_LIMIT_FIELDS = (
    "tpm",
    "rpm",
    "concurrent",
    "tokens_per_hour",
    "tokens_per_day",
    "tokens_per_month",
)


class LimitRule(Frozen):
    """Limits for one scope; ``name`` picks one key id, app, team or deployment."""

    scope: Scope
    name: str | None = None
    tpm: int | None = Field(default=None, gt=0)
    rpm: int | None = Field(default=None, gt=0)
    concurrent: int | None = Field(default=None, gt=0)
    tokens_per_hour: int | None = Field(default=None, gt=0)
    tokens_per_day: int | None = Field(default=None, gt=0)
    tokens_per_month: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _something(self) -> LimitRule:
        if all(getattr(self, f) is None for f in _LIMIT_FIELDS):
            raise ValueError("a rule needs at least one of " + ", ".join(_LIMIT_FIELDS))
        if self.scope == "global" and self.name is not None:
            raise ValueError("a global rule has no name")
        return self


class BudgetRule(Frozen):
    """A spending cap in the configured currency for a key id, an app or a team; without a
    ``name`` it applies to each of them on its own (every key, every app, every team)."""

    scope: Literal["key", "app", "team"]
    name: str | None = None
    per_day: Decimal | None = Field(default=None, gt=0, le=1_000_000_000)
    per_month: Decimal | None = Field(default=None, gt=0, le=1_000_000_000)
    soft_percent: float = Field(default=80.0, gt=0, le=100)

    @model_validator(mode="after")
    def _something(self) -> BudgetRule:
        if self.per_day is None and self.per_month is None:
            raise ValueError("a budget needs per_day or per_month")
        return self


class Price(Frozen):
    """Prices per 1,000,000 tokens; ``cached_input`` defaults to ``input``."""

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)


class LimitSettings(Frozen):
    backend: str = "memory"
    #: Only for ``redis://`` with AUTH: the vault secret holding the password.
    redis_password_vault: str | None = None
    redis_key_prefix: str = "keyguard:{limits}:"
    redis_timeout_s: float = Field(default=1.0, gt=0, le=10)
    on_backend_failure: Literal["refuse", "local"] = "refuse"
    #: With ``local``: the share of every limit each replica enforces on its own.
    local_fallback_fraction: float = Field(default=1.0, gt=0, le=1)
    default_max_tokens: int = Field(default=4096, gt=0)
    inject_max_tokens: bool = True
    teams: dict[str, list[str]] = {}
    rules: list[LimitRule] = []
    budgets: list[BudgetRule] = []
    prices: dict[str, Price] = {}
    currency: str = "USD"
    #: Prompts longer than this (characters) are tokenised in a worker thread.
    large_prompt_chars: int = Field(default=16_384, ge=0)
    #: A concurrency slot held by a replica that died is freed after this long (Redis).
    concurrency_lease_s: float = Field(default=60.0, ge=5)
    #: Keep the last N reservations and settlements in a journal (0 = off); for audits/tests.
    journal_max_len: int = Field(default=0, ge=0)
    #: Embedded default: hour/day/month counters are saved to the store this often.
    persist_interval_s: float = Field(default=10.0, gt=0)

    @property
    def enabled(self) -> bool:
        """Something to limit, or prices to report the cost of requests in (metrics)."""
        return bool(self.rules or self.budgets or self.prices)

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v == "memory":
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("redis", "rediss", "unix") or parts.password:
            raise ValueError(
                "backend must be 'memory' or a redis://HOST:PORT/DB URL without a password "
                "(store the password with 'keyguard vault put NAME' and set "
                "redis_password_vault: NAME)"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> LimitSettings:
        for team, apps in self.teams.items():
            if not apps:
                raise ValueError(f"team {team!r} has no apps")
        named = [(r.scope, r.name) for r in self.rules] + [(b.scope, b.name) for b in self.budgets]
        for scope, name in named:
            if scope == "team" and name is not None and name not in self.teams:
                raise ValueError(f"rule names team {name!r}, which is not in 'teams'")
        seen: set[tuple[str, str | None]] = set()
        for rule in self.rules:
            if (rule.scope, rule.name) in seen:
                raise ValueError(f"two rules for scope {rule.scope!r} name {rule.name!r}")
            seen.add((rule.scope, rule.name))
        budgets: set[tuple[str, str | None]] = set()
        for budget in self.budgets:
            if (budget.scope, budget.name) in budgets:
                raise ValueError(f"two budgets for {budget.scope!r} name {budget.name!r}")
            budgets.add((budget.scope, budget.name))
        return self
