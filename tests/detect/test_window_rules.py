"""The rules that count within a window: deployment enumeration, credential stuffing (from one
address, one network, one tool anywhere), the same prompt from many keys or networks."""

from __future__ import annotations

from keyguard.core.observation import Observation
from keyguard.detect.engine import Detector
from keyguard.detect.settings import DetectSettings

from .observations import CLIENT, DAY, NOW, failed, fire, learnt, obs, rules

# -- 3. enumeration ---------------------------------------------------------------------------


def test_enumeration_of_unknown_deployments_and_model_listing() -> None:
    d = learnt()
    base = {"deployment": None, "status": 404, "upstream_status": 0, "reason": "unknown_deployment"}
    assert fire(d, obs(NOW, **base, requested="aaa")) == []
    assert fire(d, obs(NOW + 1, **base, requested="bbb")) == []
    assert fire(d, obs(NOW + 2, operation="models", deployment=None)) == []
    assert rules(fire(d, obs(NOW + 3, **base, requested="ccc"))) == ["enumeration"]


def test_enumeration_spread_over_days_is_counted_over_a_longer_window() -> None:
    d = learnt()
    base = {"deployment": None, "status": 404, "upstream_status": 0, "reason": "unknown_deployment"}
    found = []
    for i in range(7):  # one unknown name every 6 hours: never 4 within 10 minutes
        found += fire(d, obs(NOW + i * 6 * 3600, **base, requested=f"name{i}"))
    assert "enumeration" not in rules(found)
    found = fire(d, obs(NOW + 42 * 3600, **base, requested="name7"))  # the 8th within 48 h
    assert "enumeration" in rules(found)
    assert "48 h" in next(f for f in found if f.rule == "enumeration").summary


def test_a_few_wrong_deployment_names_a_day_are_typos() -> None:
    d = learnt()
    base = {"deployment": None, "status": 404, "upstream_status": 0, "reason": "unknown_deployment"}
    found = []
    for i in range(20):  # one every 8 hours for a week: at most 6 within 48 h
        found += fire(d, obs(NOW + i * 8 * 3600, **base, requested=f"typo{i}"))
    assert "enumeration" not in rules(found)


def test_the_same_wrong_deployment_again_and_again_is_a_misconfiguration() -> None:
    d = learnt()
    base = {"deployment": None, "status": 404, "upstream_status": 0, "requested": "typo"}
    for i in range(50):
        assert fire(d, obs(NOW + i, **base)) == []


# -- 5. credential stuffing -------------------------------------------------------------------


def test_stuffing_many_keys_from_one_network() -> None:
    d = Detector(DetectSettings())
    for i in range(4):
        assert fire(d, failed(NOW + i, f"KEY{i:09d}")) == []
    found = fire(d, failed(NOW + 5, "KEY000000009"))
    assert rules(found) == ["stuffing"] and found[0].subject == "source:203.0.113.0/24"


def test_stuffing_one_key_from_many_networks() -> None:
    d = Detector(DetectSettings())
    for i in range(3):
        assert fire(d, failed(NOW + i, "KEYLEAKED001", f"198.18.{i}.0/24")) == []
    found = fire(d, failed(NOW + 5, "KEYLEAKED001", "198.18.9.0/24"))
    assert rules(found) == ["stuffing"] and found[0].subject == "key:KEYLEAKED001"


def test_one_app_retrying_a_revoked_key_is_not_stuffing() -> None:
    d = Detector(DetectSettings())
    for i in range(200):
        assert fire(d, failed(NOW + i, "KEYREVOKED01")) == []


# -- stuffing from anywhere, repetition ------------------------------------------------------


def _garbage(at: float, n: int, source: str = "198.51.100.7", client: str = CLIENT) -> Observation:
    """A random key-shaped string refused: no key id, a different credential each time."""
    o = failed(at, None, network="198.51.100.0/24", refused=f"garbage-{n}")
    o.source, o.client = source, client
    return o


def test_sixty_garbage_keys_in_a_minute_from_one_address_are_stuffing() -> None:
    d = Detector(DetectSettings())
    found = [f for i in range(60) for f in fire(d, _garbage(NOW + i, i))]
    assert found and found[0].rule == "stuffing" and found[0].severity == "high"
    assert found[0].subject == "address:198.51.100.7"
    assert found[0].evidence["failures"] == 20  # caught at the 20th, within 20 s


def test_azure_keys_tried_one_after_another_are_stuffing_too() -> None:
    """A list of (dead) identifiable Azure keys tried from one address, one every 2 s: each is
    also a raw Azure key sighting, and together they are stuffing (the address is blocked)."""
    d = Detector(DetectSettings())
    found = []
    for i in range(30):
        o = _garbage(NOW + 2 * i, i)
        o.reason = "azure_key_presented"
        found += [f for f in fire(d, o) if f.rule == "stuffing"]
    assert found and found[0].subject == "address:198.51.100.7"
    assert found[0].evidence["failures"] == 20


def test_one_raw_azure_key_retried_is_not_stuffing() -> None:
    d = Detector(DetectSettings())
    for i in range(100):
        o = failed(NOW + i, None, refused="one-azure-key")
        o.reason = "azure_key_presented"
        assert "stuffing" not in rules(fire(d, o))


def test_garbage_spread_over_one_network_is_stuffing() -> None:
    d = Detector(DetectSettings())
    found = [f for i in range(60) for f in fire(d, _garbage(NOW + i, i, f"198.51.100.{i}"))]
    assert found and found[0].subject == "source:198.51.100.0/24"


def test_ipv6_addresses_rotating_across_48s_of_one_provider_are_stuffing() -> None:
    """One every 2 s, each from another /48 of one /32 (below the client rule's 40 a minute):
    counted per /32 as well."""
    d = Detector(DetectSettings())
    found = []
    for i in range(40):
        o = _garbage(NOW + 2 * i, i, f"2a0e:97c0:{i:x}:1::5")
        o.network = f"2a0e:97c0:{i:x}::/48"
        found += fire(d, o)
    assert found and found[0].subject == "source:2a0e:97c0::/32"
    assert found[0].evidence["failures"] == 25


def test_ipv6_users_of_one_provider_mistyping_now_and_then_are_not_stuffing() -> None:
    d = Detector(DetectSettings())
    for i in range(200):  # one refused credential every 10 s from the provider's customers
        o = _garbage(NOW + 10 * i, i, f"2a0e:97c0:{i:x}:1::5", client=f"client-{i}")
        o.network = f"2a0e:97c0:{i:x}::/48"
        assert fire(d, o) == []


def test_one_tool_from_many_networks_is_stuffing_of_medium_severity() -> None:
    d = Detector(DetectSettings())
    found = []
    for i in range(150):
        o = _garbage(NOW + i * 0.4, i, f"10.{i}.0.1")
        o.network = f"10.{i}.0.0/24"
        found += fire(d, o)
    assert found and found[0].severity == "medium" and found[0].subject.startswith("client:")


def _scattered(at: float, n: int) -> Observation:
    """Garbage from the n-th address of a tool giving each attempt its own /24 (of another
    /16) and its own fingerprint."""
    o = _garbage(at, n, f"{20 + n % 200}.{n % 251}.{n}.9", client=f"tool/{n}")
    o.network = f"{20 + n % 200}.{n % 251}.{n}.0/24"
    return o


def test_garbage_scattered_over_networks_and_fingerprints_is_stuffing_from_anywhere() -> None:
    d = Detector(DetectSettings())
    found = [f for i in range(90) for f in fire(d, _scattered(NOW + i, i))]
    assert found and found[0].rule == "stuffing" and found[0].severity == "high"
    assert found[0].subject == "sources:any" and found[0].evidence["failures"] == 50
    assert "address" not in found[0].evidence  # it tried one: blocking it stops nothing
    again = _scattered(NOW + 91, 3)  # an address of the tool back with another credential
    again.refused = "garbage-again"
    [back] = fire(d, again)
    assert back.subject == "sources:any" and back.evidence["address"] == "23.3.3.9"


def test_a_user_mistyping_a_key_during_scattered_stuffing_is_not_blocked() -> None:
    """While a tool keeps the count from anywhere up, an office's NAT address refused one
    credential (a mistyped key, retried) is not named for block_source: every user behind it
    would be refused for the throttle's duration."""
    d = Detector(DetectSettings())
    for i in range(60):
        fire(d, _scattered(NOW + i, i))
    for j in range(3):
        o = failed(NOW + 61 + j, "KEYTYPO00001", "192.0.2.0/24")
        o.source, o.client = "192.0.2.10", "office-sdk"
        found = fire(d, o)
        assert found and found[0].subject == "sources:any"
        assert "address" not in found[0].evidence


def test_many_fleets_presenting_their_revoked_keys_are_not_stuffing_from_anywhere() -> None:
    """A rotation of every key of the gateway: each app's hosts keep presenting its old key
    from the networks that key was used from; none of it is a leak being tried."""
    d = Detector(DetectSettings())
    for k in range(120):
        d.observe(obs(NOW - 3600 + k, key_id=f"KEYROTATED{k:03d}", network=f"52.2.{k}.0/24"))
    for i in range(240):
        k = i % 120
        o = failed(NOW + i, f"KEYROTATED{k:03d}", f"52.2.{k}.0/24")
        o.source, o.client = f"52.2.{k}.7", f"app-{k}"
        assert fire(d, o) == []


def test_scattered_garbage_slower_is_counted_over_the_long_window() -> None:
    d = Detector(DetectSettings())  # one every 5 s: 12 a minute, 120 in 10 minutes
    found = [f for i in range(130) for f in fire(d, _scattered(NOW + 5 * i, i))]
    assert found and found[0].subject == "sources:any"
    assert found[0].evidence["failures"] == 100


def test_a_gateways_users_mistyping_all_day_are_not_stuffing_from_anywhere() -> None:
    d = Detector(DetectSettings())  # one wrong key a minute, each from another user
    for i in range(1440):
        assert fire(d, _scattered(NOW + 60 * i, i)) == []


def test_one_address_trickling_garbage_all_day_is_stuffing() -> None:
    d = Detector(DetectSettings())  # one every 100 s: 6 in 10 minutes, 100 in under 3 h
    found = [f for i in range(120) for f in fire(d, _garbage(NOW + 100 * i, i))]
    assert found and found[0].subject == "address:198.51.100.7"
    assert found[0].evidence["failures"] == 100 and "trickle" in found[0].summary


def test_the_day_windows_keep_no_more_than_their_thresholds_need() -> None:
    """A day's window holds a value 144 times longer than the ten-minute one: each address
    (and each presented key id) keeps no more distinct values than its rule counts to, so
    many addresses trickling garbage all day cannot hold a thousand values each."""
    d = Detector(DetectSettings())
    for i in range(2000):
        fire(d, _garbage(NOW + 40 * i, i))
        fire(d, failed(NOW + 40 * i, "KEYLEAKED003", f"198.19.{i % 250}.0/24"))
    day = d.addresses.items["198.51.100.7"].day
    assert day is not None and len(day._seen) <= 100
    assert len(d.presented.items["KEYLEAKED003"].day_networks._seen) <= 8


def test_one_leaked_key_tried_from_network_after_network_over_a_day_is_stuffing() -> None:
    d = Detector(DetectSettings())  # every 25 minutes from another network
    for i in range(7):
        assert fire(d, failed(NOW + 1500 * i, "KEYLEAKED002", f"198.18.{i}.0/24")) == []
    found = fire(d, failed(NOW + 1500 * 7, "KEYLEAKED002", "198.18.7.0/24"))
    assert rules(found) == ["stuffing"] and found[0].subject == "key:KEYLEAKED002"
    assert found[0].evidence["networks"] == 8


def test_a_fleet_presenting_its_revoked_key_from_its_own_networks_is_not_stuffing() -> None:
    """After a rotation, an autoscaled app's hosts (four egress networks) keep presenting the
    old key: networks the key itself was used from are its own, not a leak's."""
    d = Detector(DetectSettings())
    own = [f"52.1.{n}.0/24" for n in range(4)]
    for i in range(40):
        d.observe(obs(NOW - 3600 + i * 60, key_id="KEYROTATED01", network=own[i % 4]))
    for i in range(400):
        o = failed(NOW + i * 9, "KEYROTATED01", own[i % 4])
        o.source = f"52.1.{i % 4}.{2 + i % 200}"
        assert fire(d, o) == []
    found = fire(d, failed(NOW + 4000, "KEYROTATED01", "198.18.0.0/24"))  # not its own
    assert found == []  # one foreign network: a single failure, nothing yet


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


def test_one_prompt_with_new_keys_of_one_teams_apps_is_a_shared_template() -> None:
    """A team onboarding keys of its two apps runs them all through its tutorial: the apps of
    one team count as one sender; a third app outside the team makes it a farm again."""
    d = Detector(DetectSettings(), teams={"a": "payments", "b": "payments"})
    d.observe(obs(NOW - 2 * DAY))
    found = []
    for i, app in enumerate("abab"):
        found += fire(d, _prompted(NOW + i, f"KEY{app.upper()}0000000{i}", app, "10.0.1.0/24"))
    assert "repetition" not in rules(found)
    assert "repetition" in rules(fire(d, _prompted(NOW + 9, "KEYC00000001", "c", "10.0.2.0/24")))


def test_one_prompt_from_many_networks_is_repetition_but_not_one_keys_retries() -> None:
    d = _running()
    for i in range(30):  # one key retrying the same prompt from its one network
        assert "repetition" not in rules(fire(d, _prompted(NOW + i, "KEYA00000001", "a",
                                                            "10.0.1.0/24")))  # fmt: skip
    found = []
    for i in range(6):
        found += fire(d, _prompted(NOW + 40 + i, "KEYA00000001", "a", f"10.9.{i}.0/24"))
    assert "repetition" in rules(found)


def _used(d: Detector, key: str, app: str, network: str) -> None:
    """A week of the key's use from its own network (a prompt of its own each time)."""
    for i in range(20):
        d.observe(_prompted(NOW - 7 * DAY + i * 3600, key, app, network, digest=f"{key}-{i}"))


def test_one_prompt_paced_over_hours_through_apps_from_foreign_networks_is_repetition() -> None:
    """A farm sending one prompt with keys of three apps, 20 minutes apart, each from a
    network its app never used: never two keys within the fast window."""
    d = _running()
    for n, app in enumerate("abc"):
        _used(d, f"KEY{app.upper()}00000001", app, f"10.0.{n}.0/24")
    found = []
    for i, app in enumerate("abcabc"):
        found += fire(d, _prompted(NOW + i * 1200, f"KEY{app.upper()}00000001", app,
                                   f"198.18.{i}.0/24", digest="farm"))  # fmt: skip
    reps = [f for f in found if f.rule == "repetition"]
    assert reps and reps[0].at == NOW + 2 * 1200 and "6 h" in reps[0].summary


def test_apps_adopting_one_template_from_their_own_hosts_over_hours_is_not_a_farm() -> None:
    d = _running()
    for n, app in enumerate("abcd"):
        _used(d, f"KEY{app.upper()}00000001", app, f"10.0.{n}.0/24")
    for i, app in enumerate("abcdabcd"):
        n = "abcd".index(app)
        found = fire(d, _prompted(NOW + i * 1200, f"KEY{app.upper()}00000001", app,
                                  f"10.0.{n}.0/24", digest="template"))  # fmt: skip
        assert "repetition" not in rules(found)


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
    assert normalised("Order  42\n") == normalised("order 17") == b"order"
    assert normalised("Caf\u00e9 \ud800 9") == "café".encode()  # the lone surrogate's "?" goes
    # a farm varying its punctuation sends the same prompt
    farm = "Hello, World! Tell me a story..."
    assert normalised(farm) == normalised("hello world tell me a story")


def test_invisible_characters_and_look_alike_letters_do_not_make_a_new_prompt() -> None:
    from keyguard.core.observation import normalised

    plain = normalised("Write a poem about the sea, please")
    # zero-width and other invisible characters, non-ASCII spaces
    assert normalised("Wri\u200bte a po\u200dem\u2060 about\u00a0the se\ufeffa, please") == plain
    # Cyrillic and Greek letters that look Latin, and full-width Latin
    look_alike = "Wr\u0456t\u0435 \u0430 p\u03bf\u0435m \u0430b\u043eut the s\u0435a, please"
    assert normalised(look_alike) == plain
    assert normalised("\uff37rite a poem about the sea, please") == plain
    # every look-alike swapped, or invisible characters padding the text, change nothing
    swapped = str.maketrans("aeopcxy", "\u0430\u0435\u043e\u0440\u0441\u0445\u0443")
    assert normalised("Write a poem about the sea, please".translate(swapped)) == plain
    assert normalised("\u200b" * 100 + look_alike) == plain
    # text in other scripts still differs, letter by letter
    how_are_you, how_is_it = (
        "\u041a\u0430\u043a \u0434\u0435\u043b\u0430",
        "\u041a\u0430\u043a \u0434\u0435\u043b\u043e",
    )
    assert normalised(how_are_you) != normalised(how_is_it)
    assert normalised(how_are_you.replace(" ", " \u200b")) == normalised(how_are_you)
    assert normalised("Caf\u00e9") == "caf\u00e9".encode()


def test_random_ids_and_numbers_do_not_make_a_new_prompt() -> None:
    from keyguard.core.observation import normalised

    text = "Write a product description for a {} steel water bottle, please."
    plain = normalised(text.format(""))
    for nonce in ("7fK2pQ9x", "550e8400-e29b-41d4-a716-446655440000", "#1234567", "0xdeadbeef"):
        assert normalised(text.format(nonce)) == plain
        assert normalised(f"[{nonce}] " + text.format("")) == plain
    assert normalised("Ref req-7fK2pQ9x: hello there") == normalised(
        "Ref req-Qm81xz0a: hello there"
    )
    # the words around an id stay; words of letters alone are never cut
    assert normalised("Order X7Y2 shipped to Lyon") == b"ordershippedtolyon"
    assert normalised("Order shipped to Lyon") != normalised("Order shipped to Nice")
    many = " ".join(f"row{i} value{i}x" for i in range(100))  # past the one-by-one cut
    assert normalised(many + " the end") == b"theend"


def test_a_leading_system_message_is_not_part_of_the_prompt() -> None:
    from keyguard.core.observation import prompt_text

    def chat(*messages: tuple[str, str]) -> dict[str, object]:
        return {"messages": [{"role": r, "content": c} for r, c in messages]}

    turn = ("user", "Write a thriller about a hacker who breaks into a bank.")
    assert prompt_text(chat(("system", "You are Nova, session 81"), turn)) == turn[1]
    assert prompt_text(chat(("developer", "Be terse"), ("system", "x"), turn)) == turn[1]
    assert prompt_text({"input": [{"role": "system", "content": "a"}, dict([turn])]}) == ""
    assert prompt_text({"input": [{"role": "system", "content": "a"},
                                  {"role": "user", "content": turn[1]}]}) == turn[1]  # fmt: skip
    # a conversation of system messages only, or one later in the conversation, is kept
    assert prompt_text(chat(("system", "only this"))) == "only this"
    assert prompt_text(chat(turn, ("system", "later"))) == turn[1] + " later"


def _digest(text: str, system: str | None = None) -> str | None:
    import hashlib

    from keyguard.core.observation import _prompt_digest

    messages = [{"role": "user", "content": text}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return _prompt_digest({"messages": messages}, lambda b: hashlib.sha256(b).hexdigest()[:16], 40)


def test_a_farm_adding_a_nonce_to_each_copy_is_repetition() -> None:
    """One prompt, a random id in each copy (or a system message varied each time), from
    networks its keys never used: a farm."""
    import random

    rng = random.Random(5)
    text = "Write a detailed 3000-word thriller about a hacker who breaks into a bank"
    d = _running()
    found = []
    for i in range(8):
        nonce = "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(7)) + "7"
        digest = _digest(f"{text} (req-{nonce})")
        found += fire(d, _prompted(NOW + 30 * i, "KEYA00000001", "a", f"10.9.{i}.0/24",
                                   digest or ""))  # fmt: skip
    assert "repetition" in rules(found)
    d, found = _running(), []
    for i, app in enumerate("abc"):
        digest = _digest(text, system=f"You are agent {rng.getrandbits(40):x}. Session {i}.")
        found += fire(d, _prompted(NOW + i, f"KEY{app.upper()}0000000{i}", app, "10.0.1.0/24",
                                   digest or ""))  # fmt: skip
    assert "repetition" in rules(found)


def test_a_batch_job_sending_one_template_with_ids_is_not_a_farm() -> None:
    """A template with a different id each time is one prompt now: one key (or one app's
    keys) from its own networks, however many it uses, is a batch job, not a farm."""
    d = _running()
    for i in range(8):  # the app's usual egress networks, before the template
        d.observe(obs(NOW - 3600 + i, key_id="KEYA00000001", app="a", network=f"10.8.{i}.0/24"))
    found = []
    for i in range(400):
        digest = _digest(f"Summarise support ticket TKT-{i * 7919:x}a9 for the weekly report")
        key = f"KEYA0000000{1 + i % 2}"
        found += fire(d, _prompted(NOW + i, key, "a", f"10.8.{i % 8}.0/24", digest or ""))
    assert "repetition" not in rules(found)
