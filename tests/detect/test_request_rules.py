"""The rules one request decides: a key checker's probe, a decoy, a raw Azure key."""

from __future__ import annotations

from typing import Any

import pytest

from keyguard.detect.engine import Detector
from keyguard.detect.settings import DetectSettings

from .observations import NOW, failed, fire, learnt, obs, rules

# -- 4. key probe -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        {"max_tokens": 1, "empty_prompt": True},
        {"max_tokens": 3, "empty_prompt": True},  # a checker with a budget of a few tokens
        {"max_tokens": 9000, "empty_prompt": True, "temperature": 0.0, "seed": 0},
        {"max_tokens": 16000, "empty_prompt": True, "temperature": 0.0},  # no seed at all
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
    assert fire(d, obs(NOW + 2, max_tokens=9000, empty_prompt=True, temperature=0, seed=7)) == []
    assert fire(d, obs(NOW + 3, max_tokens=6, empty_prompt=True)) == []


def test_an_app_that_always_used_the_old_api_version_is_not_probing() -> None:
    d = learnt(api_version="2023-09-01-preview")
    assert fire(d, obs(NOW, api_version="2023-09-01-preview")) == []


# -- 6. decoy, 7. raw Azure key ---------------------------------------------------------------


def test_decoy_key_and_decoy_app_fire_on_the_first_request() -> None:
    s = DetectSettings(decoy_key_ids=("DECOYDECOY01",), decoy_apps=("honey",))
    d = Detector(s)
    found = fire(d, obs(NOW, key_id="DECOYDECOY01", presented_key_id="DECOYDECOY01"))
    assert "decoy" in rules(found) and found[0].severity == "critical"
    found = fire(d, failed(NOW + 1, "DECOYDECOY01"))  # even when refused
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


# -- 4. key probe: a liveness probe ("hi", one token) ------------------------------------------

HI = {"prompt_chars": 2, "max_tokens": 1}
CHECKER = {"source": "104.28.3.9", "network": "104.28.3.0/24", "user_agent": "axios/1.6.7"}


def test_a_one_token_hi_from_a_checkers_network_and_client_is_a_probe() -> None:
    found = fire(learnt(), obs(NOW, **HI, **CHECKER, client=None))
    assert rules(found) == ["key_probe", "network"]
    assert found[0].severity == "high" and "liveness probe" in found[0].summary
    # max_completion_tokens 1 is read as max_tokens; "Hello!" is as short
    found = fire(learnt(), obs(NOW, prompt_chars=6, max_tokens=1, **CHECKER))
    assert "key_probe" in rules(found)
    # a checker allowing a few tokens ("hi" with max_tokens 5) sends the same probe
    found = fire(learnt(), obs(NOW, **{**HI, "max_tokens": 5}, **CHECKER))
    assert "key_probe" in rules(found)


def test_a_one_token_hi_with_the_apps_client_from_a_new_network_is_the_network_rules() -> None:
    """The app's health check from its new region: the network rule says so (medium)."""
    found = fire(learnt(), obs(NOW, **HI, network="198.18.5.0/24"))
    assert rules(found) == ["network"]


def test_the_apps_own_health_check_is_not_a_probe() -> None:
    """ "ping" with max_tokens 1 from the app's usual network and client: its health check."""
    d = learnt()
    for i in range(20):
        assert fire(d, obs(NOW + i * 60, prompt_chars=4, max_tokens=1)) == []
    # a longer prompt, or more tokens, from anywhere: not a liveness probe
    assert "key_probe" not in rules(fire(d, obs(NOW + 2000, prompt_chars=30, max_tokens=1,
                                                 **CHECKER)))  # fmt: skip
    assert "key_probe" not in rules(fire(learnt(), obs(NOW + 2001, **{**HI, "max_tokens": 6},
                                                        **CHECKER)))  # fmt: skip
    # a key with no history at all: a developer trying the key just made
    assert fire(Detector(DetectSettings()), obs(NOW, **HI, **CHECKER)) == []


def test_a_key_still_being_learnt_is_not_judged_by_a_liveness_probe() -> None:
    """A developer's key made this morning, used from a notebook, then tried from a laptop
    with curl ("hi", one token): a network and client new to a key that has no baseline yet
    say nothing about whose it is (the empty probe shapes are still refused)."""
    d = Detector(DetectSettings())
    for i in range(20):  # an hour of use from the notebook's network, with the SDK
        assert fire(d, obs(NOW + i * 180, prompt_chars=300)) == []
    laptop = {"network": "198.51.100.0/24", "source": "198.51.100.7", "client": None}
    found = fire(d, obs(NOW + 3700, **HI, **laptop, user_agent="curl/8.5.0"))
    assert "key_probe" not in rules(found)
    found = fire(d, obs(NOW + 3800, max_tokens=1, empty_prompt=True, **laptop))
    assert rules(found)[:1] == ["key_probe"]


def test_liveness_probes_can_be_switched_off() -> None:
    off = DetectSettings(key_probe={"liveness_prompt_chars": 0})
    d = learnt(settings=off)
    assert "key_probe" not in rules(fire(d, obs(NOW, **HI, **CHECKER)))
