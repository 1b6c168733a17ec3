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
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

from ..core.observation import Observation, network_of
from .baseline_rules import unusual_hour
from .declared import Declarations
from .detection import Baselines, Detection, foreign_network
from .profile import Profile, hour_of_week, update_profile
from .rules import RULE_FUNCTIONS
from .settings import RULES, DetectSettings
from .states import AddressState, PeerGroup, PresentedState, PromptState, SourceState
from .window_rules import guardrail_hits, guardrail_subject
from .windows import Events, Recent

__all__ = ["Detector"]

_DAY = 86400.0

T = TypeVar("T")
# a prompt's first sighting: when, whether the detector was learning then, key, app (its team
# when it has one), network
_Sighting = tuple[float, bool, str, str | None, str | None]


def _saw(prompt: PromptState, now: float, key: str, app: str | None, network: str | None) -> None:
    prompt.keys.add(key, now)
    if app is not None:
        prompt.apps.add(app, now)
    if network is not None:  # a network not the sender's own
        prompt.networks.add(network, now)
        if app is not None:
            prompt.foreign_apps.add(app, now)


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
    def __init__(
        self,
        settings: DetectSettings,
        teams: Mapping[str, str] | None = None,
        declarations: Declarations | None = None,
    ) -> None:
        self.settings = settings
        self.teams = dict(teams or {})  # app -> its team (``limits.teams``)
        # what keys' limit rules and roles declare (judges a key without history)
        self.declarations = declarations
        cap = settings.max_subjects
        self.keys: _Bounded[Profile] = _Bounded(cap)
        self.apps: _Bounded[Profile] = _Bounded(cap)
        self.sources: _Bounded[SourceState] = _Bounded(cap)
        self.presented: _Bounded[PresentedState] = _Bounded(cap)
        # distinct refused credentials per exact address, and per client fingerprint
        self.addresses: _Bounded[AddressState] = _Bounded(cap)
        self.clients: _Bounded[Recent] = _Bounded(cap)
        # distinct refused credentials from every source at once
        self.anywhere = AddressState.new(settings, day=False)
        # the mature keys of each app, team and deployment ("app:NAME", "team:...", ...)
        self.peers: _Bounded[PeerGroup] = _Bounded(4096)
        # per prompt digest: who sent it lately; a prompt seen once is kept as its first
        # sighting only (most prompts are never sent again)
        self.prompts: _Bounded[PromptState | _Sighting] = _Bounded(cap)
        # requests the guardrails hit, per key (or Entra app)
        self.guarded: _Bounded[Events] = _Bounded(cap)
        # the keys and apps whose profiles changed since they were saved (:meth:`take_dirty`)
        self._dirty_keys: set[str] = set()
        self._dirty_apps: set[str] = set()
        self.started = float("inf")  # the first observation's time
        self._rules = [  # the decoy rule only with decoys configured: it cannot fire without
            RULE_FUNCTIONS[name]
            for name in RULES
            if getattr(settings, name).enabled
            and settings.enabled
            and (name != "decoy" or settings.decoy_key_ids or settings.decoy_apps)
        ]

    def observe(self, obs: Observation) -> list[Detection]:
        now = obs.at
        if now < self.started:
            self.started = now
        s = self.settings
        key = self.keys.get(obs.key_id) if obs.key_id else None
        app = self.apps.get(obs.app) if obs.app else None
        source = presented = address = client = wide = None
        if obs.status == 401:  # obs.auth_failed
            source = self.sources.get(obs.network) if obs.network else None
            if obs.presented_key_id:
                presented = self.presented.get(obs.presented_key_id)
            address = self.addresses.get(obs.source) if obs.source else None
            client_id = obs.client_id
            client = self.clients.get(client_id) if client_id else None
            wide = self._wide(obs)
        peers, peers_of = (
            self._peers(obs, app) if obs.key_id is not None and (key is None or not key.mature())
            else (None, None)
        )  # fmt: skip
        prompt = self._prompt(obs.prompt_digest) if obs.prompt_digest else None
        guarded = None
        guard_subject = guardrail_subject(obs) if obs.guardrails else None
        if guard_subject is not None and guardrail_hits(obs, s.guardrail_repeat.families):
            guarded = self.guarded.get(guard_subject)
            if guarded is None:
                guarded = self.guarded.put(guard_subject, Events(s.guardrail_repeat.window_s))
        view = Baselines(key, app, source, presented, address, client, peers, prompt)
        view.guarded = guarded
        view.wide = wide
        view.peers_of = peers_of
        if obs.status == 401:
            self._refused_view(view, obs)
        if prompt is not None and obs.app is not None:
            view.sender = self.teams.get(obs.app, obs.app)
        declarations = self.declarations
        if declarations is not None and obs.key_id is not None and s.velocity.declared:
            if key is None or not key.mature():
                view.declared = declarations.of(obs.key_id, obs.app)
        findings = []
        for rule in self._rules:
            finding = rule(view, obs, now, s)
            if finding is not None:
                findings.append(finding)
        self._update(view, obs, now)
        if guarded is not None:
            guarded.add(now)
        return findings

    def _refused_view(self, view: Baselines, obs: Observation) -> None:
        """What a refused credential is also judged by: the failures from anywhere, and
        whether its key id was used from its network before (its own fleet)."""
        view.anywhere = self.anywhere
        presented = obs.presented_key_id
        if presented is not None and obs.network is not None:
            own = self.keys.items.get(presented)
            view.presented_own = own is not None and obs.network in own.networks

    def _wide(self, obs: Observation) -> SourceState | None:
        """The failures from the wider IPv6 prefix of ``obs``'s address (an IPv4 address: none);
        made on first use."""
        address = obs.source
        if address is None or ":" not in address:
            return None
        prefix = network_of(address, 32, self.settings.ipv6_stuffing_prefix)
        if prefix is None or prefix == obs.network:
            return None
        return self.sources.get(prefix) or self.sources.put(prefix, SourceState.new(self.settings))

    def _prompt(self, digest: str) -> PromptState | None:
        """Who sent the prompt of ``digest`` lately (its first sighting made a full state)."""
        prompt = self.prompts.get(digest)
        if not isinstance(prompt, tuple):
            return prompt
        at, learning, key, app, network = prompt
        state = PromptState.new(self.settings, at, learning)
        _saw(state, at, key, app, network)
        self.prompts.put(digest, state)
        return state

    def _groups(self, obs: Observation) -> list[str]:
        """The names of the peer groups ``obs``'s key belongs to."""
        out = []
        if obs.app is not None:
            out.append("app:" + obs.app)
            team = self.teams.get(obs.app)
            if team is not None:
                out.append("team:" + team)
        if obs.deployment is not None:
            out.append("deployment:" + obs.deployment)
        return out

    def _peers(self, obs: Observation, app: Profile | None) -> tuple[PeerGroup | None, str | None]:
        """The nearest peer group with enough mature keys (the key itself is not one of them:
        it is not mature): its app's keys; else, when the app as a whole has a history, none
        (the app's history judges); else its team's keys, else its deployment's."""
        s, name, peers = self.settings, obs.app, self.peers
        if name is not None:
            group = peers.get("app:" + name)
            if group is not None and len(group) >= s.min_app_peers:
                return group, f"app {name}"
            if app is not None and app.mature():
                return None, None
            team = self.teams.get(name)
            if team is not None:
                group = peers.get("team:" + team)
                if group is not None and len(group) >= s.min_app_peers:
                    return group, f"team {team}"
        deployment = obs.deployment
        if deployment is not None:
            group = peers.get("deployment:" + deployment)
            if group is not None and len(group) >= s.min_peers:
                return group, deployment
        return None, None

    def observe_remote(self, obs: Observation) -> None:
        """Fold in a credential another replica refused: the failure windows only, no rule
        runs (that replica ran them), so stuffing spread over replicas counts as one."""
        if not obs.auth_failed or obs.key_id is not None:
            return
        source = self.sources.get(obs.network) if obs.network else None
        presented = self.presented.get(obs.presented_key_id) if obs.presented_key_id else None
        address = self.addresses.get(obs.source) if obs.source else None
        client = self.clients.get(obs.client_id) if obs.client_id else None
        view = Baselines(None, None, source, presented, address, client)
        view.wide = self._wide(obs)
        self._refused_view(view, obs)
        self._update(view, obs, obs.at)

    def _update(self, view: Baselines, obs: Observation, now: float) -> None:
        s = self.settings
        if obs.auth_failed:
            burst = s.stuffing.burst_window_s
            refused = obs.refused or obs.request_id
            if obs.source is not None:
                address = view.address or self.addresses.put(obs.source, AddressState.new(s))
                address.burst.add(refused, now)
                address.slow.add(refused, now)
                if address.day is not None:
                    address.day.add(refused, now)
            if not view.presented_own:  # a revoked key's own fleet is not stuffing
                anywhere = self.anywhere
                anywhere.burst.add(refused, now)
                anywhere.slow.add(refused, now)
            client_id = obs.client_id
            if client_id is not None:
                (view.client or self.clients.put(client_id, Recent(burst))).add(refused, now)
            if obs.network is not None:
                source = view.source or self.sources.put(obs.network, SourceState.new(s))
                if obs.presented_key_id is not None:
                    source.failed_keys.add(obs.presented_key_id, now)
                source.failures.add(now)
                source.burst.add(refused, now)
            if view.wide is not None:
                view.wide.burst.add(refused, now)
            if (
                obs.presented_key_id is not None
                and obs.network is not None
                and not view.presented_own
            ):
                presented = view.presented or self.presented.put(
                    obs.presented_key_id, PresentedState.new(s)
                )
                presented.failed_networks.add(obs.network, now)
                presented.day_networks.add(obs.network, now)
        if obs.key_id is None:
            return
        if obs.prompt_digest is not None:
            prompt = view.prompt
            # the apps of one team share their tooling (a tutorial, a template): one sender
            sender = view.sender
            if sender is None and obs.app is not None:
                sender = self.teams.get(obs.app, obs.app)
            # the networks its key or app already uses are the sender's own: not counted
            network = foreign_network(view, obs.network, now)
            if prompt is None:
                sighting = (now, now - self.started < _DAY, obs.key_id, sender, network)
                self.prompts.put(obs.prompt_digest, sighting)
            else:
                if not prompt.familiar and now - prompt.first_seen >= _DAY:
                    prompt.familiar = True
                _saw(prompt, now, obs.key_id, sender, network)
        odd_hour = view.odd_hour
        if odd_hour is None:
            odd_hour = unusual_hour(view, now, s)
        client, hour = obs.client_id, hour_of_week(now)
        key = view.key or self.keys.put(obs.key_id, Profile(s, first_seen=now))
        update_profile(key, obs, now, odd_hour, client=client, hour=hour)
        self._dirty_keys.add(obs.key_id)
        if key.last_bucket != key.noted_bucket and key.mature():  # peaks move once a bucket
            key.noted_bucket = key.last_bucket
            tokens, cost = key.token_peak.current(now), key.cost_peak.current(now)
            for name in self._groups(obs):
                group = self.peers.get(name) or self.peers.put(name, PeerGroup())
                group.note(obs.key_id, tokens, cost)
        if obs.app is not None:
            app = view.app or self.apps.put(obs.app, Profile(s, first_seen=now))
            update_profile(app, obs, now, odd_hour, client=client, hour=hour, windows=False)
            self._dirty_apps.add(obs.app)

    # -- persistence -----------------------------------------------------------------------

    def take_dirty(self) -> dict[str, dict[str, Any]]:
        """The long-term part of every profile changed since the last call."""
        out: dict[str, dict[str, Any]] = {}
        for kind, names, profiles in (
            ("key:", self._dirty_keys, self.keys),
            ("app:", self._dirty_apps, self.apps),
        ):
            for name in names:
                profile = profiles.items.get(name)
                if profile is not None:
                    out[kind + name] = profile.to_json()
            names.clear()
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
            self.started = min(self.started, profile.first_seen)  # history it already has
            n += 1
        return n
