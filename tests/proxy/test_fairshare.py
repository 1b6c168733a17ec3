"""The fair share's counts (pure): a caller's cap, its app's cap, everything given back."""

from __future__ import annotations

import pytest

from keyguard.core.principal import Principal
from keyguard.errors import TooManyRequests
from keyguard.proxy.fairshare import FairShare, share_caps


def key(key_id: str, app: str) -> Principal:
    return Principal(kind="key", id=f"key:{key_id}", app=app, key_id=key_id)


def test_caps_are_fractions_of_the_pool_and_never_zero() -> None:
    assert share_caps(256, 0.25, 0.5) == (64, 128)
    assert share_caps(8, 0.25, 0.5) == (2, 4)
    assert share_caps(1, 0.01, 0.01) == (1, 1)


def test_a_caller_beyond_its_share_is_refused_and_others_are_not() -> None:
    share = FairShare(per_caller=2, per_app=3)
    a1, a2, b = key("a1", "app-a"), key("a2", "app-a"), key("b", "app-b")
    held = [share.take(a1), share.take(a1)]
    with pytest.raises(TooManyRequests) as refused:
        share.take(a1)
    assert refused.value.reason == "fair_share_caller" and refused.value.status == 429
    assert refused.value.headers == {"retry-after": "1", "retry-after-ms": "1000"}
    held.append(share.take(a2))  # the app's third
    with pytest.raises(TooManyRequests) as refused:
        share.take(a2)  # a2 holds one, but its app holds three
    assert refused.value.reason == "fair_share_app"
    assert "This app already has 3" in refused.value.message
    held.append(share.take(b))  # another app is untouched
    assert share.in_flight == 4 and share.refused == 2
    for h in held:
        share.give_back(h)
    assert share.in_flight == 0 and not share._callers and not share._apps
    share.take(a1)  # and everyone may start again


def test_entra_identities_of_one_app_share_the_apps_cap() -> None:
    share = FairShare(per_caller=5, per_app=2)
    users = [Principal(kind="user", id=f"user:{i}", app="portal") for i in range(3)]
    share.take(users[0])
    share.take(users[1])
    with pytest.raises(TooManyRequests, match="This app already has 2"):
        share.take(users[2])
