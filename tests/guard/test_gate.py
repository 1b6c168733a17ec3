"""The detectors' one-pass gate: a detector it closes must have nothing to find.

The secret gate is held equal to the scanner's pre-filter; every other gate is held to its
detector: on random texts drawn from the characters the detectors' anchors are made of (and
multi-byte characters around them), a closed gate means its detector reports nothing. Hostile
cases: anchors split by a multi-byte character, lone surrogates, case variants, and texts the
engine must scan the same with and without the gate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyguard.guard import gate
from keyguard.guard.assigned import assigned_secrets
from keyguard.guard.engine import GuardEngine
from keyguard.guard.pii_contact import contact_matches
from keyguard.guard.windows import find_windows
from keyguard.scan.prefilter import may_hold_secret

_ALPHABET = "aAbBcCdDeEfFkKsSyYpPwWoOrRtTnNIVX0123456789 \t\n.:=@/%\\\"'`+-_~()[]{}é€\u200b\uff41"
texts = st.text(alphabet=_ALPHABET, max_size=80) | st.text(max_size=40)
# fmt: off
words = st.lists(
    st.sampled_from(
        ["password", "PassWd", "pwd", "pass", "Secret", "api_key", "KEY", "token", "Basic",
         "://", "%2F", "1234", "12 34", "1.2.3.4", "fe80::1", "a@b.co", "RSSMRA85T10A562S",
         "12345", "1 2-3", "..", "1.2.", "2024",
         "'a' + 'b'", "é", " ", ": ", "=", '"', "x" * 16, "key=", " value=", "Aa1!bB2@cC",
         "MT31", "MALT", "A1B2", " "]
    ),
    max_size=8,
).map("".join)
# fmt: on


@settings(max_examples=400, deadline=None)
@given(st.one_of(texts, words))
def test_the_secret_gate_is_the_scanners_prefilter(text: str) -> None:
    assert bool(gate.gates(text) & gate.SECRET) == may_hold_secret(text)


@settings(max_examples=400, deadline=None)
@given(st.one_of(texts, words))
def test_a_closed_gate_hides_nothing(text: str) -> None:
    found = gate.gates(text)
    if not found & gate.ASSIGNED:
        assert list(assigned_secrets(text)) == []
    if not found & gate.NUMBERS:
        assert find_windows(text) == ([], [])
    if not found & gate.EMAIL:
        assert "@" not in text
    if not found & gate.IPV6:
        assert [m for m in contact_matches(text, [], ("US",)) if m.detector == "ipv6"] == []


@settings(max_examples=300, deadline=None)
@given(st.one_of(texts, words))
def test_the_engine_finds_the_same_with_every_gate_open(text: str) -> None:
    engine = GuardEngine()
    everything = gate.SECRET | gate.ASSIGNED | gate.NUMBERS | gate.EMAIL | gate.IPV6
    real = gate.gates
    try:
        gate.gates = lambda _: everything  # type: ignore[assignment]
        expected = engine.scan(text)
    finally:
        gate.gates = real
    assert engine.scan(text) == expected


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ('db_PASSWORD "\t= x', gate.ASSIGNED),
        ("clientSecret: x", gate.ASSIGNED),
        ("API_KEY='x'", gate.ASSIGNED),
        ('<add key="SmtpPassword" value="x"', gate.ASSIGNED),
        ("4111 1111", gate.NUMBERS),
        ("(555) 0123", gate.NUMBERS),
        ("1.2.3.4", gate.NUMBERS),
        ("123 456", gate.NUMBERS),
        ("10.0.0.1", gate.NUMBERS),
        ("RSSMRA85", gate.NUMBERS),
        ("MT31 MALT RDWZ KQPB", gate.NUMBERS),
        ("x@y", gate.EMAIL),
        ("2001:db8::1", gate.IPV6),
        ("\ud800" + "A" * 16, gate.SECRET),  # a lone surrogate is read, not an error
    ],
)
def test_anchors_open_their_gate(text: str, flag: int) -> None:
    assert gate.gates(text) & flag


@pytest.mark.parametrize(
    "text",
    [
        "Please summarise the key points of the Q3 report in two sentences.",
        "pass\u00e9: x",  # a multi-byte letter between the name and its ':'
        "12\u00e934 5",  # digits parted by a letter are not one number
        "bench-user-0001 in 2024 paid 12.50 on 1.2.",  # short ids, years, prices: no window
        "12345 x6",  # five digits, then a letter: no run of six
        "k\u00e9y: token\u00e9=",
        "a:\u00e9:b",
        "",
    ],
)
def test_clean_and_split_anchors_close_every_gate(text: str) -> None:
    assert gate.gates(text) == 0
    assert GuardEngine().scan(text) == []
