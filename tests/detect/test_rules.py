"""Each rule, as a pure function over state + an observation + ``now``: fires on its signal,
stays quiet on ordinary traffic and while a baseline is still being learnt."""

from __future__ import annotations

from dataclasses import replace

from keyguard.core.observation import empty_prompt, network_of, payload_features
from keyguard.detect.engine import Detector
from keyguard.detect.profile import hour_of_week
from keyguard.detect.settings import DetectSettings

from .observations import DAY, NOW, T0, failed, fire, learnt, obs, rules


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
        "prompt_chars": 0,
        "temperature": None,
        "seed": None,
        "out_of_range": False,
    }
    f = payload_features({"max_tokens": 1e30, "seed": -(2**70)})
    assert f["max_tokens"] == 2**63 - 1 and f["seed"] == -(2**63 - 1) and f["out_of_range"]
    f = payload_features({"messages": [{"role": "user", "content": "hi"}], "seed": 0})
    assert f["empty_prompt"] is False and f["seed"] == 0 and f["prompt_chars"] == 2


def test_the_probe_checks_empty_prompt_agrees_with_the_features() -> None:
    """The gate reads ``empty_prompt`` alone before the rest of a probe's features: on every
    shape of body the two must agree, or a probe would be served."""
    blank = {"role": "user", "content": " "}
    bodies: list[dict[str, object] | None] = [
        None,
        {},
        {"messages": []},
        {"messages": [blank]},
        {"messages": [blank, {"role": "assistant", "content": None}]},
        {"messages": [blank, blank, blank]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": " "}]}]},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": ["not a message"]},
        {"messages": "not a list", "prompt": ""},
        {"messages": "not a list", "input": ""},
        {"prompt": ""},
        {"prompt": [""]},
        {"prompt": "hi"},
        {"input": ""},
        {"input": [{"role": "user", "content": ""}]},
        {"input": "ping"},
        {"max_tokens": 1},
    ]
    for body in bodies:
        assert empty_prompt(body) == bool(payload_features(body).get("empty_prompt")), body


def test_a_prompt_of_messages_images_or_tool_output_is_not_empty() -> None:
    """Only blank text is an empty prompt: the gate refuses an empty prompt with a large
    ``max_tokens`` at temperature 0 as a context-size probe, and the rule suspends the key."""
    bodies: list[dict[str, object]] = [
        {"input": [{"role": "user", "content": "Summarise the attached contract."}]},
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": "Go on."}]}]},
        {"input": [{"type": "function_call_output", "call_id": "c1", "output": "{}"}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}]},
    ]
    for body in bodies:
        body.update(max_output_tokens=16000, temperature=0)
        assert not empty_prompt(body) and not payload_features(body)["empty_prompt"], body


def test_a_short_prompts_length_is_kept_and_a_long_ones_is_not() -> None:
    def chars(payload: dict[str, object]) -> object:
        return payload_features(payload)["prompt_chars"]

    system = {"role": "system", "content": "You are a helpful assistant."}
    parts = [{"type": "text", "text": " hi "}, {"type": "text", "text": "there"}]
    assert chars({"messages": [system, {"role": "user", "content": " hi\n"}]}) == 2
    assert chars({"messages": [{"role": "user", "content": parts}]}) == 7
    assert chars({"input": "ping", "max_output_tokens": 1}) == 4
    assert chars({"input": [{"role": "user", "content": "hi"}], "max_output_tokens": 16}) == 2
    assert chars({"prompt": "x" * 64}) == 64 and chars({"prompt": "x" * 65}) is None
    assert chars({"messages": [{"role": "user", "content": "hi"}] * 3}) is None
    assert chars({"messages": [{"role": "user", "content": "lorem ipsum " * 100}]}) is None


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


def test_a_saved_baseline_with_peaks_not_numbers_is_loaded_without_them() -> None:
    """A profile in the store written with NaN or infinite peaks (by hand, or by whoever can
    write the store) neither throttles the key at every request nor blinds its rules."""
    for bad in ("NaN", "Infinity"):
        saved = learnt().take_dirty()
        for data in saved.values():
            data["peaks"] = [[float(bad), NOW] for _ in data["peaks"]]
        fresh = Detector(DetectSettings())
        assert fresh.load(saved.items()) == 2
        assert fire(fresh, obs(NOW)) == [] and fire(fresh, obs(NOW + 60)) == [], bad
        assert fresh.keys.items["KEYAAAAAAAA1"].hour_peak.value == 0.0


def test_a_saved_baseline_with_other_numbers_not_numbers_is_loaded_sane() -> None:
    """Whoever can write the store cannot make a key's rules fail or go blind at every request
    through the rest of its saved baseline either: hour weights and deployment shares that are
    not finite count as none, a week cut short is filled, remembered names with no finite time
    are left out and at most as many kept as the live profile keeps, and a baseline whose
    times are not finite is not loaded at all."""
    nan, inf = float("nan"), float("inf")
    saved = learnt().take_dirty()
    for data in saved.values():
        data["hours"] = [nan, inf, -1.0] + [1.0] * 10  # 13 of 168
        data["mix"] = {"gpt-4o": nan, "other": inf}
        data["networks"] = {f"10.0.{i // 256}.{i % 256}/24": float(i) for i in range(5000)}
        data["networks"]["bad"] = nan
        data["clients"] = {"x|y": inf}
    fresh = Detector(DetectSettings())
    assert fresh.load(saved.items()) == 2
    key = fresh.keys.items["KEYAAAAAAAA1"]
    assert len(key.hours) == 168 and all(0.0 <= h < inf for h in key.hours)
    assert key.hours[:3] == [0.0, 0.0, 0.0] and key.hours_total == 10.0
    assert key.mix == {"gpt-4o": 0.0, "other": 0.0}
    assert "bad" not in key.networks and 0 < len(key.networks) <= 256
    assert key.clients == {}
    for i in range(5):
        fire(fresh, obs(NOW + 60 * i))  # observed without raising
    for bad in (nan, inf):
        times = learnt().take_dirty()
        for data in times.values():
            data["first_seen"] = bad
        assert Detector(DetectSettings()).load(times.items()) == 0


def test_state_is_bounded() -> None:
    d = Detector(DetectSettings(max_subjects=100))
    for i in range(1000):
        d.observe(replace(failed(NOW + i, f"K{i:011d}", f"10.{i // 256}.{i % 256}.0/24")))
    assert len(d.sources.items) <= 100 and len(d.presented.items) <= 100
