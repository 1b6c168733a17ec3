"""A key without history judged against what its own limit rules and role declare."""

from __future__ import annotations

import math

import pytest

from keyguard.detect.declared import (
    MAX_DECLARED,
    Declaration,
    Declarations,
    Limits,
    RoleCeiling,
    declare,
    declared_thresholds,
)
from keyguard.detect.detection import Detection
from keyguard.detect.engine import Detector
from keyguard.detect.settings import DetectSettings, VelocityRule

from .observations import NOW, QUICK, mature, obs

V = VelocityRule()
KEY_20K = Declarations({"NEWKEY000001": Limits(tpm=20_000)})


def _velocity(found: list[Detection]) -> list[Detection]:
    return [f for f in found if f.rule == "velocity"]


def _spend(
    d: Detector, tokens: int, n: int, every: float, start: float = NOW, key: str = "NEWKEY000001"
) -> list[Detection]:
    """``n`` requests of ``tokens`` tokens, one every ``every`` seconds, by a brand-new key."""
    found: list[Detection] = []
    for i in range(n):
        o = obs(start + i * every, key_id=key, app="fresh", prompt_tokens=tokens,
                completion_tokens=0)  # fmt: skip
        found += d.observe(o)
    return _velocity(found)


# -- hostile first: what a thief with a freshly created (or stolen unused) key does -----------


def test_a_new_key_bursting_at_its_declared_ceiling_is_flagged_in_its_first_minute() -> None:
    """No peers anywhere (the defaults would allow 300,000 tokens a minute): 41,000 tokens a
    minute by a key whose rule declares 20,000."""
    d = Detector(DetectSettings(), declarations=KEY_20K)
    found = _spend(d, 2050, 20, 3.0)
    assert found, "not flagged"
    first = found[0]
    assert first.at - NOW < 60
    assert first.evidence["judged_against"] == "declared: key limit tpm 20000"
    assert first.evidence["declared_tokens_per_minute"] == 20_000
    assert first.evidence["tokens_in_window"] >= 0.8 * 20_000
    assert "first" in first.summary and "declared" in first.summary


def test_without_the_declaration_the_same_burst_passes_the_defaults() -> None:
    """What was missing: the same traffic, judged against the global defaults only."""
    assert _spend(Detector(DetectSettings()), 2050, 20, 3.0) == []


def test_a_key_past_its_first_minute_above_twice_its_declared_rate_is_flagged() -> None:
    """Limits count fixed minutes, so up to twice the tpm fits in 60 s; more means the limit
    was not what held the key (a replica limiting on its own, a rule edited since)."""
    d = Detector(DetectSettings(), declarations=KEY_20K)
    assert _spend(d, 500, 10, 30.0, start=NOW - 600) == []  # ten light minutes
    found = _spend(d, 4200, 10, 5.0)  # then 42,000 within 50 s
    assert found and found[0].evidence["judged_against"] == "declared: key limit tpm 20000"
    assert "threshold 40000" in found[0].summary


def test_one_large_request_is_not_a_sustained_burst() -> None:
    d = Detector(DetectSettings(), declarations=KEY_20K)
    assert _spend(d, 17_000, 1, 1.0) == []  # 85 % in one request: a long document
    assert _spend(d, 500, 1, 1.0, start=NOW + 5)  # a second request, still at 87 %: sustained


def test_the_first_minute_rule_can_be_tuned_and_switched_off() -> None:
    patient = DetectSettings(velocity=VelocityRule(declared_share=0.95))
    assert _spend(Detector(patient, declarations=KEY_20K), 2000, 9, 3.0) == []  # 90 %
    off = DetectSettings(velocity=VelocityRule(declared=False))
    assert _spend(Detector(off, declarations=KEY_20K), 2050, 20, 3.0) == []


# -- benign: no new false alerts --------------------------------------------------------------


@pytest.mark.parametrize("share", [0.1, 0.2, 0.3])
def test_a_new_key_well_below_its_declaration_is_not_flagged(share: float) -> None:
    d = Detector(DetectSettings(), declarations=KEY_20K)
    per_request = int(20_000 * share / 20)  # 20 requests a minute, for 30 minutes
    assert _spend(d, per_request, 600, 3.0) == []


def test_peers_that_are_tighter_take_precedence() -> None:
    """A generous declaration (200,000 a minute) does not loosen what the app's keys say."""
    d = Detector(QUICK, declarations=Declarations({"NEWKEY000001": Limits(tpm=200_000)}))
    mature(d, {"LIGHTKEY0001": ("light", 100), "LIGHTKEY0002": ("light", 100)})
    found: list[Detection] = []
    for i in range(20):
        found += d.observe(obs(NOW + i * 3, key_id="NEWKEY000001", app="light", prompt_tokens=1500))
    velocity = _velocity(found)
    assert velocity and velocity[0].evidence["judged_against"] == "peers: keys of app light"


def test_peers_that_run_near_the_ceiling_make_it_usual_for_a_new_key() -> None:
    """Every key of the app peaks at ~17,000 of its 20,000 a minute: a new one doing the same
    is what this app does."""
    declarations = Declarations(any_key=Limits(tpm=20_000))
    d = Detector(QUICK, declarations=declarations)
    mature(d, {"BUSYKEY00001": ("busy", 17_000), "BUSYKEY00002": ("busy", 17_000)})
    found: list[Detection] = []
    for i in range(20):
        found += d.observe(obs(NOW + i * 3, key_id="NEWKEY000001", app="busy", prompt_tokens=850))
    assert _velocity(found) == []


def test_busy_keys_of_other_apps_do_not_make_the_ceiling_usual() -> None:
    """The deployment's heavy keys have ceilings of their own: a new key of a new app at its
    own ceiling is still flagged (peers looser than the declaration do not judge it)."""
    d = Detector(QUICK, declarations=KEY_20K)
    mature(d, {f"HEAVYKEY000{k}": (f"heavy-{k}", 17_000) for k in range(6)})
    found = _spend(d, 2050, 20, 3.0)
    assert found and found[0].evidence["judged_against"] == "declared: key limit tpm 20000"


def test_light_keys_of_other_apps_do_not_flag_a_new_key_well_within_its_declaration() -> None:
    """A new batch app declared at 120,000 a minute, on a deployment whose keys (other apps,
    light) peak at ~4,500: running at half its rule is what it was declared for; the
    deployment's keys judge it again from ``declared_share`` of its rule on."""
    declarations = Declarations({"NEWKEY000001": Limits(tpm=120_000)})
    d = Detector(QUICK, declarations=declarations)
    mature(d, {f"LIGHTKEY000{k}": (f"light-{k}", 1500) for k in range(6)})
    assert _spend(d, 3000, 20, 3.0, start=NOW + 120) == []  # its first minute: 10 % of the rule
    assert _spend(d, 3000, 400, 3.0, start=NOW + 600) == []  # then 60,000 a minute for 20 min
    found = _spend(d, 6000, 30, 3.0, start=NOW + 2400)  # then 120,000 a minute
    assert found and found[0].evidence["judged_against"] == "peers: keys of gpt-4o"
    assert "threshold 96000" in found[0].summary


def test_a_learnt_key_is_judged_by_its_own_history_not_its_declaration() -> None:
    d = Detector(QUICK, declarations=Declarations(any_key=Limits(tpm=1000)))
    mature(d, {"OLDKEY000001": ("steady", 4000)})  # 8,000 a minute, above its "declaration"
    found = d.observe(obs(NOW, key_id="OLDKEY000001", app="steady", prompt_tokens=4000))
    assert _velocity(found) == []


def test_a_declaration_changed_by_a_reload_applies_at_once() -> None:
    """Declarations are looked up per request, never saved with a baseline: a key seen before
    the reload is judged by the rule in force after it."""
    before = Detector(DetectSettings(), declarations=Declarations(any_key=Limits(tpm=200_000)))
    assert _spend(before, 2050, 1, 1.0, start=NOW - 5) == []
    saved = before.take_dirty()
    after = Detector(DetectSettings(), declarations=KEY_20K)
    assert after.load(saved.items()) >= 1
    found = _spend(after, 2050, 20, 3.0)
    assert found and found[0].evidence["judged_against"] == "declared: key limit tpm 20000"
    looser = Detector(DetectSettings(), declarations=Declarations(any_key=Limits(tpm=200_000)))
    looser.load(saved.items())
    assert _spend(looser, 2050, 20, 3.0) == []


def test_no_declaration_keeps_the_peer_chain() -> None:
    d = Detector(DetectSettings(), declarations=Declarations())
    assert _spend(d, 2050, 20, 3.0) == []


# -- the pure decision ------------------------------------------------------------------------


def test_declare_picks_the_tightest_of_the_key_s_rule_else_the_app_s() -> None:
    key = Limits(tpm=20_000, tokens_per_hour=600_000)
    assert declare(key, Limits(tpm=5)) == Declaration(20_000, "key limit tpm 20000")
    hourly = Limits(tpm=50_000, tokens_per_hour=30_000)
    assert declare(hourly, None) == Declaration(30_000, "key limit tokens_per_hour 30000")
    assert declare(None, Limits(tpm=9000)) == Declaration(9000, "app limit tpm 9000")
    assert declare(Limits(), Limits(tpm=9000)) == Declaration(9000, "app limit tpm 9000")
    assert declare(None, None) is None
    assert declare(Limits(rpm=60), None) is None  # requests alone do not bound tokens


def test_declare_with_a_role_bounds_tokens_by_requests() -> None:
    role = RoleCeiling("embed-only", 500)
    found = declare(Limits(rpm=60, tpm=50_000), None, role)
    assert found == Declaration(30_000, "role embed-only (500 tokens a request) x key limit rpm 60")
    assert declare(Limits(rpm=60, tpm=10_000), None, role) == Declaration(
        10_000, "key limit tpm 10000"
    )
    assert declare(Limits(tpm=10_000), None, role) == Declaration(10_000, "key limit tpm 10000")


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, -math.inf, MAX_DECLARED * 10, 1e300])
def test_zero_negative_and_absurd_numbers_declare_nothing(value: float) -> None:
    """A hostile or careless store writer's numbers never tighten nor loosen anything."""
    assert declare(Limits(tpm=value, rpm=value, tokens_per_hour=value), None) is None
    assert declare(Limits(tpm=value), Limits(tpm=8000)) == Declaration(8000, "app limit tpm 8000")
    assert declare(Limits(rpm=1e9), None, RoleCeiling("r", value)) is None
    assert declare(Limits(rpm=1e9), None, RoleCeiling("r", 1e9)) is None  # 1e18: absurd


def test_thresholds_of_the_decision() -> None:
    d = Declaration(20_000, "key limit tpm 20000")
    quiet = {"tokens": 15_999.0, "age_s": 30.0, "requests": 8, "expected": None}
    threshold, first = declared_thresholds(d, V, **quiet)  # type: ignore[arg-type]
    assert (threshold, first) == (40_000, None)
    at_share = {**quiet, "tokens": 16_000.0}
    assert declared_thresholds(d, V, **at_share)[1] is not None  # type: ignore[arg-type]
    late = {**at_share, "age_s": 61.0}
    assert declared_thresholds(d, V, **late)[1] is None  # type: ignore[arg-type]
    alone = {**at_share, "requests": 1}
    assert declared_thresholds(d, V, **alone)[1] is None  # type: ignore[arg-type]
    usual = {**at_share, "expected": 17_000.0}
    assert declared_thresholds(d, V, **usual)[1] is None  # type: ignore[arg-type]
    below_usual = {**at_share, "expected": 5000.0}
    assert declared_thresholds(d, V, **below_usual)[1] is not None  # type: ignore[arg-type]


def test_a_tiny_declaration_never_fires_below_the_floor() -> None:
    tiny = Declaration(10, "key limit tpm 10")
    threshold, first = declared_thresholds(tiny, V, tokens=999, age_s=5, requests=3, expected=None)
    assert threshold == V.declared_min_tokens and first is None


def test_a_longer_window_scales_the_declared_rate() -> None:
    v = VelocityRule(window_s=300)
    threshold, _ = declared_thresholds(
        Declaration(20_000, "x"), v, tokens=0, age_s=0, requests=1, expected=None
    )
    assert threshold == 2 * 5 * 20_000


def test_declarations_look_up_the_named_rule_else_the_unnamed_one() -> None:
    decl = Declarations(
        {"KEYAAAAAAAA1": Limits(tpm=1000), "KEYBBBBBBBB1": Limits()},
        {"billing": Limits(tpm=7000)},
        any_key=Limits(tpm=3000),
        any_app=Limits(tpm=9000),
    )
    assert decl.of("KEYAAAAAAAA1", "billing") == Declaration(1000, "key limit tpm 1000")
    assert decl.of("KEYBBBBBBBB1", "billing") == Declaration(7000, "app limit tpm 7000")
    assert decl.of("KEYCCCCCCCC1", "other") == Declaration(3000, "key limit tpm 3000")
    assert Declarations(any_app=Limits(tpm=9000)).of("KEYCCCCCCCC1", None) is None
    decl.role = lambda key_id, app: RoleCeiling("small", 100)
    assert Declarations({"K": Limits(rpm=10)}, role=decl.role).of("K", None) == Declaration(
        1000, "role small (100 tokens a request) x key limit rpm 10"
    )
