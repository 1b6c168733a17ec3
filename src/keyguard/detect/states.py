"""What the detector keeps besides the keys' and apps' baselines: the failed authentications
per network, address and presented key id (:class:`SourceState`, :class:`AddressState`,
:class:`PresentedState`), who sent a prompt lately (:class:`PromptState`) and the usage peaks
of the mature keys of an app, a team or a deployment (:class:`PeerGroup`). All bounded; every
method takes ``now``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .settings import DetectSettings
from .windows import Events, Recent

__all__ = ["AddressState", "PeerGroup", "PresentedState", "PromptState", "SourceState"]


@dataclass(slots=True)
class SourceState:
    """Failed authentications from one network (``burst``: the distinct credentials refused
    within the last minute)."""

    failed_keys: Recent
    failures: Events
    burst: Recent

    @classmethod
    def new(cls, settings: DetectSettings) -> SourceState:
        span = settings.stuffing.window_s
        return cls(Recent(span), Events(span), Recent(settings.stuffing.burst_window_s, cap=1024))


@dataclass(slots=True)
class PromptState:
    """Who sent one prompt (by its digest) lately: keys, apps and networks; and, over the
    slow window, the apps that sent it from networks not their own."""

    keys: Recent
    apps: Recent
    networks: Recent
    first_seen: float
    familiar: bool  # in use for over a day, or seen while the detector learnt: not a farm's
    foreign_apps: Recent

    @classmethod
    def new(cls, settings: DetectSettings, now: float, learning: bool) -> PromptState:
        r = settings.repetition
        span = r.window_s
        return cls(
            Recent(span, cap=64),
            Recent(span, cap=64),
            Recent(span, cap=64),
            now,
            learning,
            Recent(r.slow_window_s, cap=64),
        )


@dataclass(slots=True)
class AddressState:
    """The distinct credentials refused from one address (or from anywhere): lately, over the
    long window and over the day (``day``: an address's only, not anywhere's)."""

    burst: Recent
    slow: Recent
    day: Recent | None = None

    @classmethod
    def new(cls, settings: DetectSettings, day: bool = True) -> AddressState:
        r = settings.stuffing
        return cls(
            Recent(r.burst_window_s, cap=1024),
            Recent(r.window_s, cap=1024),
            # a day holds what the rule counts to, no more (a window 144 times the long one)
            Recent(r.day_window_s, cap=r.day_failures_per_address) if day else None,
        )


class PeerGroup:
    """The usage peaks of the mature keys of one app, team or deployment: what a key with no
    history of its own is judged against (the nearest group with enough keys). Bounded to
    ``cap`` keys (the most recently seen); the median of their peaks is worked out at most
    once a minute."""

    __slots__ = ("_tokens", "_cost", "_cap", "_cached", "_cached_at")

    def __init__(self, cap: int = 1000) -> None:
        self._tokens: dict[str, float] = {}
        self._cost: dict[str, float] = {}
        self._cap = cap
        self._cached: tuple[float, float] | None = None
        self._cached_at = -1e18

    def note(self, key_id: str, tokens: float, cost: float) -> None:
        for table, value in ((self._tokens, tokens), (self._cost, cost)):
            table.pop(key_id, None)
            table[key_id] = value
            if len(table) > self._cap:
                del table[next(iter(table))]

    def __len__(self) -> int:
        return len(self._tokens)

    def typical(self, now: float) -> tuple[float, float]:
        """The median of the peers' token and cost peaks: a typical key's busiest window."""
        if self._cached is None or now - self._cached_at >= 60:
            self._cached = (_median(self._tokens.values()), _median(self._cost.values()))
            self._cached_at = now
        return self._cached


def _median(values: Any) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


@dataclass(slots=True)
class PresentedState:
    """Failed authentications presenting one key id: the networks they came from, lately and
    over the day (not the networks the key itself was used from)."""

    failed_networks: Recent
    day_networks: Recent

    @classmethod
    def new(cls, settings: DetectSettings) -> PresentedState:
        r = settings.stuffing
        return cls(Recent(r.window_s), Recent(r.day_window_s, cap=r.day_networks_per_key))
