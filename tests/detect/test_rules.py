"""Each rule, as a pure function over state + an observation + ``now``: fires on its signal,
stays quiet on ordinary traffic and while a baseline is still being learnt."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from keyguard.core.observation import Observation, network_of, payload_features
from keyguard.detect.detection import Detection
from keyguard.detect.engine import Detector
from keyguard.detect.profile import hour_of_week
from keyguard.detect.settings import DetectSettings

DAY = 86400.0
T0 = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
UA = "AsyncAzureOpenAI/Python 1.99.0"
CLIENT = "python/1.99.0/Linux/x86_64/CPython/3.11.9"


def obs(at: float, **kw: Any) -> Observation:
    base: dict[str, Any] = {
        "at": at,
        "request_id": f"r{int(at * 1000)}",
        "key_id": "KEYAAAAAAAA1",
        "presented_key_id": "KEYAAAAAAAA1",
        "app": "billing",
        "source": "10.1.2.3",
        "network": "10.1.2.0/24",
        "user_agent": UA,
        "client": CLIENT,
        "operation": "chat",
        "deployment": "gpt-4o",
        "api_version": "2024-10-21",
        "status": 200,
        "upstream_status": 200,
        "prompt_tokens": 300,
        "completion_tokens": 100,
        "latency_ms": 800.0,
        "max_tokens": 400,
    }
    base.update(kw)
    return Observation(**base)


_LEARNT: dict[str, Detector] = {}


def learnt(**kw: Any) -> Detector:
    """A detector that has seen three weeks of business-hours traffic for the default key
    (built once per variant, then copied)."""
    name = repr(sorted(kw.items()))
    if name not in _LEARNT:
        _LEARNT[name] = _learn(**kw)
    return copy.deepcopy(_LEARNT[name])


def _learn(settings: DetectSettings | None = None, days: int = 21, **kw: Any) -> Detector:
    d = Detector(settings or DetectSettings())
    for day in range(days):
        if day % 7 >= 5:
            continue  # weekdays only
        for minute in range(9 * 60, 17 * 60, 6):  # 80 requests a day, 09:00-17:00
            assert d.observe(obs(T0 + day * DAY + minute * 60, **kw)) == []
    return d


def fire(d: Detector, o: Observation) -> list[Detection]:
    return d.observe(o)


def rules(findings: list[Detection]) -> list[str]:
    return [f.rule for f in findings]


NOW = T0 + 22 * DAY + 10 * 3600  # a Tuesday, 10:00 UTC, after the baseline


def test_ordinary_traffic_after_the_baseline_fires_nothing() -> None:
    d = learnt()
    for i in range(100):
        assert fire(d, obs(NOW + i * 30)) == []


def test_helpers() -> None:
    assert hour_of_week(T0) == 0 and hour_of_week(T0 + 6 * DAY + 23 * 3600) == 167
    assert network_of("203.0.113.77") == "203.0.113.0/24"
    assert network_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert network_of("::ffff:203.0.113.7") == "203.0.113.0/24"
    assert network_of("not an address") is None
    f = payload_features({"messages": [{"role": "user", "content": ""}], "max_tokens": 1})
    assert f == {
        "max_tokens": 1,
        "empty_prompt": True,
        "temperature": None,
        "seed": None,
        "out_of_range": False,
    }
    f = payload_features({"max_tokens": 1e30, "seed": -(2**70)})
    assert f["max_tokens"] == 2**63 - 1 and f["seed"] == -(2**63 - 1) and f["out_of_range"]
    f = payload_features({"messages": [{"role": "user", "content": "hi"}], "seed": 0})
    assert f["empty_prompt"] is False and f["seed"] == 0


# -- 1. network ------------------------------------------------------------------------------


def test_network_never_seen_fires_on_the_first_request() -> None:
    d = learnt()
    found = fire(d, obs(NOW, source="198.51.100.9", network="198.51.100.0/24"))
    assert rules(found) == ["network"] and found[0].severity == "medium"
    assert found[0].subject == "key:KEYAAAAAAAA1"
    # three new networks within the window: high
    fire(d, obs(NOW + 1, network="198.51.101.0/24"))
    found = fire(d, obs(NOW + 2, network="198.51.102.0/24"))
    assert rules(found) == ["network"] and found[0].severity == "high"


def test_network_known_to_the_app_is_not_new_for_a_fresh_key() -> None:
    d = learnt()
    d.observe(obs(NOW, key_id="KEYBBBBBBBB2", network="10.9.9.0/24"))  # app's other network
    assert fire(d, obs(NOW + 5, key_id="KEYNEWNEW003")) == []


def test_network_is_quiet_while_learning_unless_many_at_once() -> None:
    d = Detector(DetectSettings())
    for i in range(4):
        assert fire(d, obs(NOW + i, network=f"192.0.{i}.0/24")) == []
    assert rules(fire(d, obs(NOW + 5, network="192.0.9.0/24"))) == ["network"]


# -- 2. velocity ------------------------------------------------------------------------------


def test_velocity_fires_within_seconds_of_a_surge() -> None:
    d = learnt()
    found: list[Detection] = []
    t = NOW
    while not found and t < NOW + 60:
        found = fire(d, obs(t, prompt_tokens=3000, completion_tokens=1000))
        t += 0.5
    assert rules(found) == ["velocity"] and t - NOW < 10


def test_velocity_cost_and_concurrency() -> None:
    d = learnt(cost=0.002)
    found = fire(d, obs(NOW, cost=5.0))
    assert rules(found) == ["velocity"] and "cost" in found[0].summary
    d = learnt()
    found = []
    for i in range(60):  # 60 long requests all running at once
        found += fire(d, obs(NOW + i * 0.01, latency_ms=30_000.0, prompt_tokens=10))
    assert "velocity" in rules(found) and "concurrent" in found[0].summary


def test_velocity_uses_an_absolute_threshold_while_learning() -> None:
    d = Detector(DetectSettings())
    assert fire(d, obs(NOW, prompt_tokens=100_000)) == []
    assert rules(fire(d, obs(NOW + 1, prompt_tokens=250_000))) == ["velocity"]


# -- 3. enumeration ---------------------------------------------------------------------------


def test_enumeration_of_unknown_deployments_and_model_listing() -> None:
    d = learnt()
    base = {"deployment": None, "status": 404, "upstream_status": 0, "reason": "unknown_deployment"}
    assert fire(d, obs(NOW, **base, requested="aaa")) == []
    assert fire(d, obs(NOW + 1, **base, requested="bbb")) == []
    assert fire(d, obs(NOW + 2, operation="models", deployment=None)) == []
    assert rules(fire(d, obs(NOW + 3, **base, requested="ccc"))) == ["enumeration"]


def test_the_same_wrong_deployment_again_and_again_is_a_misconfiguration() -> None:
    d = learnt()
    base = {"deployment": None, "status": 404, "upstream_status": 0, "requested": "typo"}
    for i in range(50):
        assert fire(d, obs(NOW + i, **base)) == []


# -- 4. key probe -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        {"max_tokens": 1, "empty_prompt": True},
        {"max_tokens": 9000, "empty_prompt": True, "temperature": 0.0, "seed": 0},
    ],
)
def test_key_probe_fires_on_the_first_request(shape: dict[str, Any]) -> None:
    d = Detector(DetectSettings())  # even a brand-new key
    found = fire(d, obs(NOW, **shape))
    assert rules(found) == ["key_probe"] and found[0].severity == "high"


def test_an_old_api_version_is_a_hint_against_a_baseline_only() -> None:
    assert fire(Detector(DetectSettings()), obs(NOW, api_version="2023-09-01-preview")) == []
    found = fire(learnt(), obs(NOW, api_version="2023-09-01-preview"))
    assert rules(found) == ["key_probe"] and found[0].severity == "medium"


def test_a_health_check_is_not_a_probe() -> None:
    d = Detector(DetectSettings())
    assert fire(d, obs(NOW, max_tokens=1, empty_prompt=False)) == []
    assert fire(d, obs(NOW + 1, max_tokens=9000, empty_prompt=True, temperature=0.7)) == []


def test_an_app_that_always_used_the_old_api_version_is_not_probing() -> None:
    d = learnt(api_version="2023-09-01-preview")
    assert fire(d, obs(NOW, api_version="2023-09-01-preview")) == []


# -- 5. credential stuffing -------------------------------------------------------------------


def _failed(
    at: float, key: str | None, network: str = "203.0.113.0/24", refused: str | None = None
) -> Observation:
    """A refused credential: by default the key ``key`` (the same digest each time)."""
    return obs(
        at,
        key_id=None,
        app=None,
        presented_key_id=key,
        refused=refused or f"digest-of-{key}",
        network=network,
        status=401,
        upstream_status=0,
        reason="unknown_key",
        deployment=None,
    )


def test_stuffing_many_keys_from_one_network() -> None:
    d = Detector(DetectSettings())
    for i in range(4):
        assert fire(d, _failed(NOW + i, f"KEY{i:09d}")) == []
    found = fire(d, _failed(NOW + 5, "KEY000000009"))
    assert rules(found) == ["stuffing"] and found[0].subject == "source:203.0.113.0/24"


def test_stuffing_one_key_from_many_networks() -> None:
    d = Detector(DetectSettings())
    for i in range(3):
        assert fire(d, _failed(NOW + i, "KEYLEAKED001", f"198.18.{i}.0/24")) == []
    found = fire(d, _failed(NOW + 5, "KEYLEAKED001", "198.18.9.0/24"))
    assert rules(found) == ["stuffing"] and found[0].subject == "key:KEYLEAKED001"


def test_one_app_retrying_a_revoked_key_is_not_stuffing() -> None:
    d = Detector(DetectSettings())
    for i in range(200):
        assert fire(d, _failed(NOW + i, "KEYREVOKED01")) == []


# -- 6. decoy, 7. raw Azure key ---------------------------------------------------------------


def test_decoy_key_and_decoy_app_fire_on_the_first_request() -> None:
    s = DetectSettings(decoy_key_ids=("DECOYDECOY01",), decoy_apps=("honey",))
    d = Detector(s)
    found = fire(d, obs(NOW, key_id="DECOYDECOY01", presented_key_id="DECOYDECOY01"))
    assert "decoy" in rules(found) and found[0].severity == "critical"
    found = fire(d, _failed(NOW + 1, "DECOYDECOY01"))  # even when refused
    assert "decoy" in rules(found)
    assert "decoy" in rules(fire(d, obs(NOW + 2, app="honey", key_id="KEYHONEY0001")))


def test_raw_azure_key_fires_on_the_first_request() -> None:
    d = Detector(DetectSettings())
    found = fire(
        d,
        obs(
            NOW,
            key_id=None,
            app=None,
            presented_key_id=None,
            status=401,
            reason="azure_key_presented",
            upstream_status=0,
        ),
    )
    assert rules(found) == ["raw_azure_key"]


# -- 8. reseller ------------------------------------------------------------------------------


def test_reseller_many_new_clients_on_one_key() -> None:
    d = learnt()
    assert fire(d, obs(NOW, user_agent="curl/8.1")) == []
    assert fire(d, obs(NOW + 60, user_agent="SillyTavern/1.12")) == []
    found = fire(d, obs(NOW + 120, user_agent="node-fetch/3"))
    assert rules(found) == ["reseller"]


def test_an_sdk_upgrade_is_one_new_client() -> None:
    d = learnt()
    for i in range(100):
        assert fire(d, obs(NOW + i * 30, user_agent="AsyncAzureOpenAI/Python 2.0.0")) == []


# -- 9. unusual time --------------------------------------------------------------------------


def test_use_in_hours_the_key_is_never_used() -> None:
    d = learnt()
    night = T0 + 23 * DAY + 3 * 3600  # Wednesday 03:00
    assert fire(d, obs(night)) == []
    assert fire(d, obs(night + 60)) == []
    found = fire(d, obs(night + 120))
    assert rules(found) == ["unusual_time"] and found[0].severity == "low"


def test_dormant_key_used_again() -> None:
    d = learnt()
    found = fire(d, obs(NOW + 30 * DAY))
    assert "unusual_time" in rules(found) and "dormancy" in found[0].summary


# -- settings ---------------------------------------------------------------------------------


def test_each_rule_can_be_switched_off() -> None:
    off = DetectSettings(key_probe={"enabled": False})
    assert Detector(off).observe(obs(NOW, max_tokens=1, empty_prompt=True)) == []
    assert (
        Detector(DetectSettings(enabled=False)).observe(obs(NOW, max_tokens=1, empty_prompt=True))
        == []
    )


def test_baselines_survive_a_restart() -> None:
    d = learnt()
    saved = d.take_dirty()
    assert set(saved) == {"key:KEYAAAAAAAA1", "app:billing"}
    fresh = Detector(DetectSettings())
    assert fresh.load(saved.items()) == 2
    found = fire(fresh, obs(NOW, network="198.51.100.0/24"))
    assert rules(found) == ["network"]  # the restored baseline knows the usual network
    assert fire(fresh, obs(NOW + 1, network=None)) == []


def test_state_is_bounded() -> None:
    d = Detector(DetectSettings(max_subjects=100))
    for i in range(1000):
        d.observe(replace(_failed(NOW + i, f"K{i:011d}", f"10.{i // 256}.{i % 256}.0/24")))
    assert len(d.sources.items) <= 100 and len(d.presented.items) <= 100


# -- stuffing from anywhere, cold start, repetition -------------------------------------------


def _garbage(at: float, n: int, source: str = "198.51.100.7", client: str = CLIENT) -> Observation:
    """A random key-shaped string refused: no key id, a different credential each time."""
    o = _failed(at, None, network="198.51.100.0/24", refused=f"garbage-{n}")
    o.source, o.client = source, client
    return o


def test_sixty_garbage_keys_in_a_minute_from_one_address_are_stuffing() -> None:
    d = Detector(DetectSettings())
    found = [f for i in range(60) for f in fire(d, _garbage(NOW + i, i))]
    assert found and found[0].rule == "stuffing" and found[0].severity == "high"
    assert found[0].subject == "address:198.51.100.7"
    assert found[0].evidence["failures"] == 20  # caught at the 20th, within 20 s


def test_garbage_spread_over_one_network_is_stuffing() -> None:
    d = Detector(DetectSettings())
    found = [f for i in range(60) for f in fire(d, _garbage(NOW + i, i, f"198.51.100.{i}"))]
    assert found and found[0].subject == "source:198.51.100.0/24"


def test_one_tool_from_many_networks_is_stuffing_of_medium_severity() -> None:
    d = Detector(DetectSettings())
    found = []
    for i in range(150):
        o = _garbage(NOW + i * 0.4, i, f"10.{i}.0.1")
        o.network = f"10.{i}.0.0/24"
        found += fire(d, o)
    assert found and found[0].severity == "medium" and found[0].subject.startswith("client:")


def test_a_new_key_spending_far_above_its_peers_is_flagged_in_its_first_minute() -> None:
    d = Detector(DetectSettings())
    for day in range(4):  # six keys of other apps learn the deployment's usual rate
        for minute in range(0, 8 * 60, 2):
            for k in range(6):
                at = T0 + day * DAY + minute * 60 + k
                o = obs(at, key_id=f"PEERKEY0000{k}", app=f"peer-{k}", prompt_tokens=300)
                d.observe(o)
    assert len(d.peers.get("deployment:gpt-4o") or []) == 6
    found = []
    for i in range(20):  # a brand-new key of a brand-new app: 2,050 tokens every 3 s
        found += fire(d, obs(NOW + i * 3, key_id="NEWKEY000001", app="fresh", prompt_tokens=2000,
                             completion_tokens=50))  # fmt: skip
    velocity = [f for f in found if f.rule == "velocity"]
    assert velocity and velocity[0].at - NOW < 60
    assert velocity[0].evidence["judged_against"] == "peers: keys of gpt-4o"


QUICK = DetectSettings(learning_days=1)  # keys mature after a day of use


def _mature(d: Detector, keys: dict[str, tuple[str, int]]) -> None:
    """The last 26 hours of steady use by each key (its app, its tokens a request every 30 s,
    its peaks fresh): mature keys."""
    start = NOW - 26 * 3600
    for step in range(0, 26 * 120 - 20):
        for k, (key_id, (app, tokens)) in enumerate(keys.items()):
            d.observe(obs(start + step * 30 + k, key_id=key_id, app=app, prompt_tokens=tokens))


def _first_minute(d: Detector, app: str, tokens: int) -> list[Detection]:
    found: list[Detection] = []
    for i in range(20):  # a brand-new key: `tokens` every 3 s
        found += fire(d, obs(NOW + i * 3, key_id="NEWKEY000001", app=app, prompt_tokens=tokens))
    return [f for f in found if f.rule == "velocity"]


def test_a_new_key_is_judged_by_its_app_s_keys_then_its_team_s_then_the_deployment_s() -> None:
    """A light app on a deployment of heavy users: its new key, at a rate that is ordinary for
    the deployment, is far above its own app's keys (and its team's)."""
    heavy = {f"HEAVYKEY000{k}": (f"heavy-{k}", 20_000) for k in range(6)}
    light = {"LIGHTKEY0001": ("light", 100), "LIGHTKEY0002": ("light", 100)}
    team = {"TEAMKEY00001": ("team-b", 100), "TEAMKEY00002": ("team-c", 100)}
    teams = {"team-a": "small", "team-b": "small", "team-c": "small"}
    d = Detector(QUICK, teams=teams)
    _mature(d, {**heavy, **light, **team})
    by_app = _first_minute(d, "light", 1500)
    assert by_app and by_app[0].evidence["judged_against"] == "peers: keys of app light"
    assert by_app[0].at - NOW < 60
    d2 = Detector(QUICK, teams=teams)
    _mature(d2, {**heavy, **team})
    by_team = _first_minute(d2, "team-a", 1500)  # no keys of its own app: its team's
    assert by_team and by_team[0].evidence["judged_against"] == "peers: keys of team small"
    d3 = Detector(QUICK)
    _mature(d3, {**heavy, **light})
    assert _first_minute(d3, "team-a", 1500) == []  # only the deployment's heavy keys: ordinary


def test_a_new_key_with_no_peers_is_judged_against_the_defaults() -> None:
    d = Detector(DetectSettings())
    found = [
        f
        for i in range(20)
        for f in fire(d, obs(NOW + i * 3, key_id="NEWKEY000001", app="fresh", prompt_tokens=2000))
    ]
    assert "velocity" not in rules(found)


def _prompted(at: float, key: str, app: str, network: str, digest: str = "d1") -> Observation:
    return obs(at, key_id=key, presented_key_id=key, app=app, network=network, prompt_digest=digest)


def _running() -> Detector:
    """A detector that has run for two days (prompts first seen while it learnt are usual)."""
    d = Detector(DetectSettings())
    d.observe(obs(NOW - 2 * DAY))
    return d


def test_one_prompt_sent_with_keys_of_several_apps_is_repetition() -> None:
    d = _running()
    assert fire(d, _prompted(NOW, "KEYA00000001", "a", "10.0.1.0/24")) == []
    assert "repetition" not in rules(
        fire(d, _prompted(NOW + 1, "KEYA00000002", "a", "10.0.1.0/24"))
    )
    found = fire(d, _prompted(NOW + 2, "KEYB00000001", "b", "10.0.2.0/24"))
    [rep] = [f for f in found if f.rule == "repetition"]
    assert rep.subject == "prompt:d1" and rep.evidence["keys"] == 3


def test_one_prompt_from_many_networks_is_repetition_but_not_one_keys_retries() -> None:
    d = _running()
    for i in range(30):  # one key retrying the same prompt from its one network
        assert "repetition" not in rules(fire(d, _prompted(NOW + i, "KEYA00000001", "a",
                                                            "10.0.1.0/24")))  # fmt: skip
    found = []
    for i in range(6):
        found += fire(d, _prompted(NOW + 40 + i, "KEYA00000001", "a", f"10.9.{i}.0/24"))
    assert "repetition" in rules(found)


def test_a_prompt_in_use_for_days_is_not_a_farm() -> None:
    d = _running()
    fire(d, _prompted(NOW, "KEYA00000001", "a", "10.0.1.0/24", "boilerplate"))
    later = NOW + DAY + 60  # the same boilerplate, a day on, from three apps
    found = []
    for i, app in enumerate("bcd"):
        found += fire(d, _prompted(later + i, f"KEY{app.upper()}0000000{i}", app, f"10.{i}.2.0/24",
                                   "boilerplate"))  # fmt: skip
    assert "repetition" not in rules(found)
    learning = Detector(DetectSettings())  # prompts seen while a new detector learns: usual
    for i, app in enumerate("abc"):
        found += fire(learning, _prompted(NOW + i, f"KEY{app.upper()}0000000{i}", app,
                                          f"10.{i}.3.0/24"))  # fmt: skip
    assert "repetition" not in rules(found)


def test_the_prompt_digest_is_keyed_and_normalised() -> None:
    from keyguard.core.observation import normalised, prompt_text

    payload = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Order  42"}]}]}
    assert prompt_text(payload) == "Order  42"
    assert normalised("Order  42\n") == normalised("order 17") == b"order00"
    assert normalised("Caf\u00e9 \ud800 9") == "café ? 0".replace(" ", "").encode()
