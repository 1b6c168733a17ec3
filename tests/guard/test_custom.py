"""Operators' rules: hostile patterns refused or bounded, blocklists whole-word and
case-insensitive, and configuration mistakes reported as one line naming the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from keyguard.guard.engine import GuardEngine
from keyguard.guard.settings import GuardSettings


def _engine(**rules: object) -> GuardEngine:
    return GuardEngine(GuardSettings.model_validate(rules))


def _found(engine: GuardEngine, text: str) -> list[tuple[str, str]]:
    return [(m.category, text[m.start : m.end]) for m in engine.scan(text)]


@pytest.mark.parametrize(
    ("pattern", "fix"),
    [
        (r"(a)\1", "backreferences"),
        (r"(?<=x)y", "look-around"),
        (r"a*", "empty string"),
        (r"(", "not valid"),
        ("x{1000}{1000}", "not valid"),
    ],
)
def test_patterns_re2_cannot_run_in_linear_time_are_refused(pattern: str, fix: str) -> None:
    with pytest.raises(ValidationError, match=fix):
        GuardSettings.model_validate({"patterns": [{"name": "p", "pattern": pattern}]})


def test_a_catastrophic_backtracking_pattern_runs_in_linear_time() -> None:
    engine = _engine(
        patterns=[{"name": "evil", "pattern": r"(a+)+$"}, {"name": "x", "pattern": r"(x+x+)+y"}]
    )
    text = "a" * 200_000 + "!" + "x" * 200_000
    assert _found(engine, text) == []  # returns (RE2): a backtracking engine would not


def test_matches_per_text_are_capped() -> None:
    engine = _engine(patterns=[{"name": "digit", "pattern": r"\d"}], max_matches=10)
    assert len(engine.scan("1 " * 10_000)) == 10


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"blocklists": [{"name": "email", "terms": ["x"]}]}, "built-in category"),
        ({"blocklists": [{"name": "Bad Name", "terms": ["x"]}]}, "lower case"),
        ({"blocklists": [{"name": "a", "terms": ["  "]}]}, "blank"),
        ({"blocklists": [{"name": "a", "terms": ["x"]}],
          "patterns": [{"name": "a", "pattern": "y"}]}, "unique"),
        ({"phone_regions": ["XX"]}, "unknown phone region"),
        ({"max_text_chars": 10}, "greater than or equal"),
    ],
)  # fmt: skip
def test_configuration_mistakes_name_the_fix(rules: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GuardSettings.model_validate(rules)


def test_blocklists_are_whole_word_and_case_insensitive() -> None:
    engine = _engine(blocklists=[{"name": "codenames", "terms": ["Project Falcon", "bluebird"]}])
    text = "PROJECT   falcon ships; BlueBird too; projectfalcon, bluebirds and xbluebird do not"
    assert _found(engine, text) == [
        ("codenames", "PROJECT   falcon"),
        ("codenames", "BlueBird"),
    ]


def test_blocklists_with_many_terms_and_unicode() -> None:
    terms = [f"term{i}" for i in range(9_998)] + ["Straße"]
    engine = _engine(blocklists=[{"name": "big", "terms": terms}])
    # full case folding: "Straße" is "strasse" whatever the case
    assert _found(engine, "see TERM9997, strasse, STRASSE and Straßen") == [
        ("big", "TERM9997"),
        ("big", "strasse"),
        ("big", "STRASSE"),
    ]
    assert _found(engine, "term1" * 50_000) == []


def test_patterns_report_their_name_and_custom_wins_over_personal() -> None:
    engine = _engine(patterns=[{"name": "employee-id", "pattern": r"EMP-[0-9]{6}"}])
    assert _found(engine, "badge EMP-004211 issued") == [("employee-id", "EMP-004211")]
    m = engine.scan("EMP-004211")[0]
    assert (m.family, m.detector) == ("custom", "pattern:employee-id")


def test_a_pattern_over_text_with_lone_surrogates_and_invisible_characters() -> None:
    engine = _engine(patterns=[{"name": "code", "pattern": r"FALCON-\d+"}])
    text = "\ud800 FAL\u200bCON-42 \udfff"
    assert [m.category for m in engine.scan(text)] == ["code"]
