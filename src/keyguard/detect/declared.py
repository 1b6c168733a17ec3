"""What a key declares about itself: the ceiling its own limit rules and role put on its rate.

A key with no history is judged against its peers (:mod:`.engine`), and also against what it
was configured for: the ``tpm`` of the limit rule that applies to the key (else to its app),
its ``tokens_per_hour``, or its ``rpm`` times the most tokens one request its role allows
(``max_prompt_chars`` + ``max_output_tokens``). The tightest of these is its
:class:`Declaration`: tokens per minute, and a label for the finding
(``key limit tpm 20000``).

Nothing here reads configuration or a clock: the wiring turns the ``limits:`` rules into
:class:`Limits` and the policy's roles into :class:`RoleCeiling` (this package sits below both),
and :func:`declare` / :func:`declared_thresholds` are pure. A declaration is looked up at every
request of a new key, never stored with its baseline: a reload that changes a rule changes the
judgement at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from .settings import VelocityRule

__all__ = [
    "Declaration",
    "Declarations",
    "Limits",
    "RoleCeiling",
    "declare",
    "declared_thresholds",
    "MAX_DECLARED",
]

#: Above this (tokens per minute), a declared number is a typo or "unlimited": ignored.
MAX_DECLARED = 1e12


@dataclass(frozen=True, slots=True)
class Limits:
    """The rate limits one limit rule sets (``None``: not set)."""

    tpm: float | None = None
    rpm: float | None = None
    tokens_per_hour: float | None = None


@dataclass(frozen=True, slots=True)
class RoleCeiling:
    """The most tokens one request of a role can carry (its prompt cap plus its output cap)."""

    name: str
    request_tokens: float


@dataclass(frozen=True, slots=True)
class Declaration:
    """The tokens per minute a key declares at most, and where that comes from."""

    tokens_per_minute: float
    label: str  # "key limit tpm 20000", "role embed-only x key limit rpm 60"


def _usable(value: float | None) -> float | None:
    """A declared number that bounds anything: positive, finite, not absurdly large."""
    if value is None or not math.isfinite(value) or value <= 0 or value > MAX_DECLARED:
        return None
    return float(value)


def declare(
    key: Limits | None, app: Limits | None, role: RoleCeiling | None = None
) -> Declaration | None:
    """The tightest ceiling the key's limit rules declare (key scope, else app scope) and its
    role with the rule's ``rpm``; ``None`` when nothing usable is declared."""
    scope: Literal["key", "app"] = "key"
    limits = key
    if limits is None or not any(
        _usable(v) for v in (limits.tpm, limits.rpm, limits.tokens_per_hour)
    ):
        scope, limits = "app", app
    if limits is None:
        return None
    found: list[Declaration] = []
    tpm = _usable(limits.tpm)
    if tpm is not None:
        found.append(Declaration(tpm, f"{scope} limit tpm {tpm:.0f}"))
    hourly = _usable(limits.tokens_per_hour)
    if hourly is not None:  # a whole hour may be spent in one minute
        found.append(Declaration(hourly, f"{scope} limit tokens_per_hour {hourly:.0f}"))
    rpm = _usable(limits.rpm)
    per_request = _usable(role.request_tokens) if role is not None else None
    if rpm is not None and per_request is not None and role is not None:
        tokens = rpm * per_request
        if tokens <= MAX_DECLARED:
            label = f"role {role.name} ({per_request:.0f} tokens a request) x {scope} limit rpm"
            found.append(Declaration(tokens, f"{label} {rpm:.0f}"))
    return min(found, key=lambda d: d.tokens_per_minute) if found else None


def declared_thresholds(
    declaration: Declaration,
    v: VelocityRule,
    *,
    tokens: float,
    age_s: float,
    requests: int,
    expected: float | None,
) -> tuple[float, str | None]:
    """``(threshold, first_minutes)`` for a key without its own history.

    ``threshold``: tokens over the velocity window above which it exceeds its declaration
    (``new_key_multiplier`` times the declared rate over the window: with limits counted in
    fixed minutes, twice the ``tpm`` can be spent within 60 s, never more; never below
    ``declared_min_tokens``).

    ``first_minutes``: a description when the key, ``age_s`` seconds after its first request,
    has already spent ``tokens`` (``requests`` requests, this one included) at or above
    ``declared_share`` of its declaration within ``declared_first_s``, else ``None``. Left
    quiet when ``expected`` (the busiest window of a typical key of its own app, or of the
    app's history) reaches that share anyway: spending near the ceiling is what this app does.
    """
    window = declaration.tokens_per_minute * max(1.0, v.window_s / 60.0)
    threshold = max(v.new_key_multiplier * window, v.declared_min_tokens)
    share = v.declared_share * window
    if (
        age_s > v.declared_first_s
        or requests < v.declared_min_requests
        or tokens < max(share, v.declared_min_tokens)
        or (expected is not None and expected >= share)
    ):
        return threshold, None
    percent = 100.0 * tokens / window
    return threshold, (
        f"{tokens:.0f} tokens ({percent:.0f} % of its declared rate) within its first "
        f"{max(age_s, 1.0):.0f} s"
    )


LimitsOf = Mapping[str, Limits]


class Declarations:
    """The limit rules of keys and apps (a named rule, else the scope's unnamed one) and a
    lookup of the roles bound to a key: what :meth:`of` turns into a key's declaration."""

    def __init__(
        self,
        keys: LimitsOf | None = None,
        apps: LimitsOf | None = None,
        *,
        any_key: Limits | None = None,
        any_app: Limits | None = None,
        role: Callable[[str, str | None], RoleCeiling | None] | None = None,
    ) -> None:
        self._keys = dict(keys or {})
        self._apps = dict(apps or {})
        self._any_key = any_key
        self._any_app = any_app
        self.role = role  # replaced when the policy is wired (it starts after the monitor)

    def of(self, key_id: str, app: str | None) -> Declaration | None:
        key = self._keys.get(key_id, self._any_key)
        app_limits = self._apps.get(app, self._any_app) if app is not None else None
        role = self.role(key_id, app) if self.role is not None else None
        return declare(key, app_limits, role)
