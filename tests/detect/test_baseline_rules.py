"""The rules against a baseline: a network never seen, usage far above the baseline or a new
key's peers, many never-seen clients, use in unusual hours or after dormancy."""

from __future__ import annotations

from keyguard.detect.detection import Detection
from keyguard.detect.engine import Detector
from keyguard.detect.settings import DetectSettings

from .observations import DAY, NOW, QUICK, T0, fire, learnt, mature, obs, rules

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


# -- a new key: judged by its peers (its app's keys, its team's, the deployment's) --------------


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
    mature(d, {**heavy, **light, **team})
    by_app = _first_minute(d, "light", 1500)
    assert by_app and by_app[0].evidence["judged_against"] == "peers: keys of app light"
    assert by_app[0].at - NOW < 60
    d2 = Detector(QUICK, teams=teams)
    mature(d2, {**heavy, **team})
    by_team = _first_minute(d2, "team-a", 1500)  # no keys of its own app: its team's
    assert by_team and by_team[0].evidence["judged_against"] == "peers: keys of team small"
    d3 = Detector(QUICK)
    mature(d3, {**heavy, **light})
    assert _first_minute(d3, "team-a", 1500) == []  # only the deployment's heavy keys: ordinary


def test_a_new_key_with_no_peers_is_judged_against_the_defaults() -> None:
    d = Detector(DetectSettings())
    found = [
        f
        for i in range(20)
        for f in fire(d, obs(NOW + i * 3, key_id="NEWKEY000001", app="fresh", prompt_tokens=2000))
    ]
    assert "velocity" not in rules(found)


# -- 12. bursts --------------------------------------------------------------------------------


def _burst(d: Detector, start: float, n: int = 40, seconds: float = 120) -> list[Detection]:
    found = []
    for i in range(n):
        found += fire(d, obs(start + i * seconds / n))
    return found


def test_bursts_every_three_hours_are_a_stolen_key() -> None:
    """40 requests in 2 minutes every 3 hours, in the key's hours, from its network and
    client, each under the velocity floors: the third burst within a day fires."""
    d = learnt()
    for b in range(2):
        assert rules(_burst(d, NOW + b * 3 * 3600)) == []  # 10:00, 13:00
    found = _burst(d, NOW + 6 * 3600)  # 16:00
    assert set(rules(found)) == {"burst"}
    first = next(f for f in found if f.rule == "burst")
    assert first.severity == "medium" and first.evidence["bursts"] == 3


def test_one_surge_and_one_test_run_are_not_bursts() -> None:
    d = learnt()
    found = _burst(d, NOW)  # a developer's test run
    found += _burst(d, NOW + 3600, n=4500, seconds=5 * 3600)  # a sale day: 15 a minute, hours
    found += _burst(d, NOW + 7 * 3600, n=35, seconds=600)  # a slower run: 35 in 10 minutes
    assert "burst" not in rules(found)


def test_bursts_are_judged_against_the_keys_own_busiest_minutes() -> None:
    """A key whose traffic comes in bursts already (a batch every hour) learnt them."""
    d = Detector(DetectSettings())
    for h in range(24 * 14):
        for i in range(50):  # 50 requests in 2 minutes every hour, for two weeks
            d.observe(obs(NOW - 15 * DAY + h * 3600 + i * 2.4))
    found = []
    for b in range(4):
        found += _burst(d, NOW + b * 3 * 3600, n=55)
    assert "burst" not in rules(found)


# -- 13. model mix -----------------------------------------------------------------------------


def test_a_key_switched_to_a_deployment_it_never_used_is_a_model_mix_shift() -> None:
    """The app always used gpt-4o-mini; at its usual rate, half its requests now go to
    gpt-4o (a reseller on its host serving the expensive model)."""
    d = learnt(deployment="gpt-4o-mini")
    found = []
    for i in range(20):
        found += fire(d, obs(NOW + i * 180, deployment="gpt-4o" if i % 2 else "gpt-4o-mini"))
    assert rules(found) == ["model_mix"] and found[0].evidence["requests_on_it"] == 10
    assert found[0].evidence["deployment"] == "gpt-4o" and found[0].severity == "medium"


def test_trying_a_new_deployment_or_one_the_app_uses_is_not_a_shift() -> None:
    d = learnt(deployment="gpt-4o-mini")
    found = []
    for i in range(9):  # an app trying a new model: a few requests an hour
        found += fire(d, obs(NOW + i * 180, deployment="gpt-4o"))
    assert "model_mix" not in rules(found)
    d = learnt(deployment="gpt-4o-mini")  # another key of the app spends on gpt-4o
    for i in range(400):
        d.observe(obs(NOW - 3 * DAY + i * 60, key_id="KEYBBBBBBBB2", deployment="gpt-4o"))
    for i in range(30):
        found += fire(d, obs(NOW + i * 60, deployment="gpt-4o"))
    assert "model_mix" not in rules(found)


def test_a_profile_saved_before_the_mix_was_kept_knows_its_deployments() -> None:
    d = learnt(deployment="gpt-4o-mini")
    saved = d.take_dirty()
    for data in saved.values():
        del data["mix"]
    fresh = Detector(DetectSettings())
    fresh.load(saved.items())
    found = []
    for i in range(20):
        found += fire(fresh, obs(NOW + i * 60))  # gpt-4o: not in its saved deployments
    assert "model_mix" in rules(found)
    for i in range(20):
        found = fire(fresh, obs(NOW + 3600 + i * 60, deployment="gpt-4o-mini"))
        assert "model_mix" not in rules(found)


# -- 14. sustained usage -----------------------------------------------------------------------


def _long_completions(d: Detector, hours: float, key: str = "KEYAAAAAAAA1") -> list[Detection]:
    """The key's own network and client, one 15,000-token completion every 70 s: never two
    in the velocity window, under its 20,000-token floor."""
    found: list[Detection] = []
    for i in range(int(hours * 3600 / 70)):
        found += fire(d, obs(NOW + i * 70, key_id=key, prompt_tokens=500,
                             completion_tokens=14_500, latency_ms=60_000.0))  # fmt: skip
    return found


def test_long_completions_for_hours_under_the_minute_floors_are_sustained_usage() -> None:
    found = _long_completions(learnt(), 1.0)
    assert "velocity" not in rules(found)
    sustained = [f for f in found if f.rule == "sustained"]
    assert sustained and sustained[0].severity == "high"
    assert sustained[0].evidence["judged_against"] == "own history"
    assert sustained[0].evidence["threshold"] == 400_000  # the floor: a light key
    assert sustained[0].at - NOW < 32 * 60  # the 27th request of 15,000 tokens


def test_a_key_at_its_own_busiest_hours_pace_is_not_sustained_usage() -> None:
    d = Detector(QUICK)
    mature(d, {"BUSYKEY00001": ("busy", 6000)})  # 720,000 tokens an hour for 26 hours
    for i in range(4 * 120):  # four more hours at that pace, then a little above
        tokens = 6000 if i < 2 * 120 else 7500
        assert fire(d, obs(NOW + i * 30, key_id="BUSYKEY00001", app="busy",
                           prompt_tokens=tokens)) == []  # fmt: skip


def test_a_new_key_of_a_mature_app_is_judged_against_the_whole_apps_busiest_hour() -> None:
    """A rotated key taking over the app's traffic spends what the app did; a second, new
    key spending more than half as much again as the whole app, each minute under the
    velocity floors, is someone else's."""
    app = {"BUSYKEY00001": ("busy", 3000), "BUSYKEY00002": ("busy", 3000)}
    d = Detector(QUICK)
    mature(d, app)  # the app: two keys, 720,000 tokens an hour together
    for i in range(2 * 240):  # the rotation: a new key takes over both, the old ones stop
        assert fire(d, obs(NOW + i * 15, key_id="ROTATEDKEY01", app="busy",
                           prompt_tokens=3000)) == []  # fmt: skip
    d = Detector(QUICK)
    mature(d, app)
    found: list[Detection] = []
    for i in range(2 * 120):  # 9,600 tokens every 30 s: 19,200 a minute, 1.15 million an hour
        found += fire(d, obs(NOW + i * 30, key_id="SECONDKEY001", app="busy",
                             prompt_tokens=9500))  # fmt: skip
    assert "velocity" not in rules(found)
    sustained = [f for f in found if f.rule == "sustained"]
    assert sustained and sustained[0].evidence["judged_against"] == "app busy, all its keys"
    assert 1_000_000 < sustained[0].evidence["threshold"] < 1_200_000
    assert sustained[0].at - NOW < 3600


def test_a_new_key_of_a_new_app_is_left_to_the_velocity_rule() -> None:
    found = _long_completions(Detector(DetectSettings()), 1.0, key="NEWKEY000001")
    assert "sustained" not in rules(found)


def test_the_sustained_peak_survives_a_restart() -> None:
    d = Detector(QUICK)
    mature(d, {"BUSYKEY00001": ("busy", 6000)})
    saved = d.take_dirty()
    restored = Detector(QUICK)
    assert restored.load(saved.items()) == 2
    key = restored.keys.get("BUSYKEY00001")
    assert key is not None and key.hour_peak.current(NOW) > 600_000
