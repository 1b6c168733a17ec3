"""Values assigned to a secret-like name: a separator inside a value already read is part of
that value, not a new assignment. Text dense with them (``password=`` over and over) read
each separator's 128-character value: every character judged some fifteen times, 0.8 s for
64 KB on the event loop. Counted, not timed: the characters of the values judged."""

from __future__ import annotations

from typing import Any

import pytest

from keyguard.guard import assigned
from keyguard.guard.engine import GuardEngine


@pytest.mark.parametrize("unit", ["password=", "password=Aa1", "pwd:Aa1!", "token=x:"])
def test_a_line_dense_with_assignments_judges_each_character_about_once(
    monkeypatch: pytest.MonkeyPatch, unit: str
) -> None:
    judged = 0
    looks_secret = assigned._looks_secret

    def counted(kind: str, value: str) -> Any:
        nonlocal judged
        judged += len(value)
        return looks_secret(kind, value)

    monkeypatch.setattr(assigned, "_looks_secret", counted)
    text = unit * (60_000 // len(unit))
    list(assigned.assigned_secrets(text))
    assert judged <= 2 * len(text)


@pytest.mark.parametrize(
    "text",
    [
        "password=Tr0ub4dor&3x\npwd: Zx9!qwe7Lm\n",
        "db_password=Tr0ub4dor&3x api_key=kP9vQ2xL7mN4rT8wZ3yB",
        'client_secret: "kP9vQ2xL7mN4rT8wZ3yB" password = "Tr0ub4dor&3x"',
        "password=changeme token=kP9vQ2xL7mN4rT8wZ3yB",
    ],
)
def test_assignments_apart_are_each_found(text: str) -> None:
    found = sorted(text[m.start : m.end] for m in GuardEngine().scan(text))
    values = ("Tr0ub4dor&3x", "Zx9!qwe7Lm", "kP9vQ2xL7mN4rT8wZ3yB")
    assert found == sorted(v for v in values if v in text)
