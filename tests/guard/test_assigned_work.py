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


@pytest.mark.parametrize("unit", ["password=", "pwd=Aa1!", "Password=pwd="])
def test_connection_string_passwords_dense_on_a_line_are_read_about_once(
    monkeypatch: pytest.MonkeyPatch, unit: str
) -> None:
    """The same for ``Password=`` in a connection string: each anchor read its 128-character
    value and then looked 400 characters back for a connection string around it."""
    from keyguard.scan import cloudkeys

    looked = 0
    context = cloudkeys._CS_CONTEXT

    class Counted:
        def search(self, text: str, start: int, end: int) -> Any:
            nonlocal looked
            looked += end - start
            return context.search(text, start, end)

    monkeypatch.setattr(cloudkeys, "_CS_CONTEXT", Counted())
    text = unit * (60_000 // len(unit))
    list(cloudkeys._cs_passwords(text))
    assert looked <= 4 * len(text)
    value = "".join(reversed("x3&rod4bu0rT"))  # written backwards: this file is scanned too
    found = list(cloudkeys._cs_passwords(f"Server=db;User Id=a;Password={value};" * 3))
    assert [hit.secret for hit in found] == [value] * 3
