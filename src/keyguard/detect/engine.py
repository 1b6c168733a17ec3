"""The detector: per-key, per-app and per-network state, the rules run over it, one request at a
time, off the hot path.

``Detector.observe(obs)`` runs every enabled rule against the state as it was before ``obs``,
then folds ``obs`` into the state, and returns the findings. Time is ``obs.at``: the live
monitor passes the wall clock, ``keyguard replay`` the recorded one, so weeks of traffic replay
in seconds. Memory is bounded: at most ``max_subjects`` keys, apps, networks and presented key
ids are tracked each (least recently seen forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from ..core.observation import Observation
from .profile import PresentedState, Profile, SourceState, update_profile
from .rules import RULE_FUNCTIONS, Baselines, Detection, unusual_hour
from .settings import RULES, DetectSettings

__all__ = ["Detector"]

T = TypeVar("T")


class _Bounded(Generic[T]):
    """A dict that forgets its least recently used entries beyond ``cap``."""

    def __init__(self, cap: int) -> None:
        self.items: OrderedDict[str, T] = OrderedDict()
        self._cap = cap

    def get(self, name: str) -> T | None:
        item = self.items.get(name)
        if item is not None:
            self.items.move_to_end(name)
        return item

    def put(self, name: str, item: T) -> T:
        self.items[name] = item
        self.items.move_to_end(name)
        if len(self.items) > self._cap:
            self.items.popitem(last=False)
        return item


class Detector:
    def __init__(self, settings: DetectSettings) -> None:
        self.settings = settings
        cap = settings.max_subjects
        self.keys: _Bounded[Profile] = _Bounded(cap)
        self.apps: _Bounded[Profile] = _Bounded(cap)
        self.sources: _Bounded[SourceState] = _Bounded(cap)
        self.presented: _Bounded[PresentedState] = _Bounded(cap)
        self.dirty: set[str] = set()  # "key:<id>" / "app:<name>" profiles changed since saved
        self._rules = [
            RULE_FUNCTIONS[name]
            for name in RULES
            if getattr(settings, name).enabled and settings.enabled
        ]

    def observe(self, obs: Observation) -> list[Detection]:
        now = obs.at
        s = self.settings
        key = self.keys.get(obs.key_id) if obs.key_id else None
        app = self.apps.get(obs.app) if obs.app else None
        source = self.sources.get(obs.network) if obs.network and obs.auth_failed else None
        presented = (
            self.presented.get(obs.presented_key_id)
            if obs.presented_key_id and obs.auth_failed
            else None
        )
        view = Baselines(key, app, source, presented)
        findings = []
        for rule in self._rules:
            finding = rule(view, obs, now, s)
            if finding is not None:
                findings.append(finding)
        self._update(view, obs, now)
        return findings

    def _update(self, view: Baselines, obs: Observation, now: float) -> None:
        s = self.settings
        if obs.auth_failed:
            if obs.network is not None:
                source = view.source or self.sources.put(obs.network, SourceState.new(s))
                if obs.presented_key_id is not None:
                    source.failed_keys.add(obs.presented_key_id, now)
                source.failures.add(now)
            if obs.presented_key_id is not None and obs.network is not None:
                presented = view.presented or self.presented.put(
                    obs.presented_key_id, PresentedState.new(s)
                )
                presented.failed_networks.add(obs.network, now)
        if obs.key_id is None:
            return
        odd_hour = unusual_hour(view, now, s)
        key = view.key or self.keys.put(obs.key_id, Profile(s, first_seen=now))
        update_profile(key, obs, now, odd_hour)
        self.dirty.add("key:" + obs.key_id)
        if obs.app is not None:
            app = view.app or self.apps.put(obs.app, Profile(s, first_seen=now))
            update_profile(app, obs, now, odd_hour, windows=False)
            self.dirty.add("app:" + obs.app)

    # -- persistence -----------------------------------------------------------------------

    def take_dirty(self) -> dict[str, dict[str, Any]]:
        """The long-term part of every profile changed since the last call."""
        out: dict[str, dict[str, Any]] = {}
        for subject in self.dirty:
            kind, _, name = subject.partition(":")
            profile = (self.keys if kind == "key" else self.apps).items.get(name)
            if profile is not None:
                out[subject] = profile.to_json()
        self.dirty.clear()
        return out

    def load(self, saved: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Restore profiles saved by :meth:`take_dirty`; returns how many were loaded."""
        n = 0
        for subject, data in saved:
            kind, _, name = subject.partition(":")
            try:
                profile = Profile.from_json(data, self.settings)
            except (KeyError, TypeError, ValueError):
                continue
            (self.keys if kind == "key" else self.apps).put(name, profile)
            n += 1
        return n
