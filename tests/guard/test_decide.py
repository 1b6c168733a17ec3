"""The decisions over a body's texts (pure): actions per match, typed placeholders, restore."""

from __future__ import annotations

import re
from collections.abc import Sequence

from keyguard.guard.decide import MAX_HITS, Placeholders, judge, restorations, rewritten
from keyguard.guard.findings import Match, Slot
from keyguard.policy.guardrails import Effective, GuardActions

SECRET = "SECRET-0123456789"
MAIL = "ann@contoso.com"


def scan_slots(slots: Sequence[Slot]) -> list[tuple[Slot, Match]]:
    out = []
    for slot in slots:
        for m in re.finditer(re.escape(SECRET), slot.text):
            out.append((slot, Match("secret", "test_key", "test", m.start(), m.end())))
        for m in re.finditer(re.escape(MAIL), slot.text):
            out.append((slot, Match("personal", "email", "email", m.start(), m.end())))
    return out


def fp(value: str) -> str:
    return "fp:" + str(len(value))


def slot(text: str, role: str = "user", i: int = 0) -> Slot:
    return Slot(("messages", i, "content"), role, text)


def test_block_names_the_first_match_and_keeps_no_value() -> None:
    verdict = judge(
        [slot(f"a {MAIL}"), slot(f"b {SECRET}", "tool", 1)],
        scan_slots, Effective([GuardActions()]), fp, "request",
    )  # fmt: skip
    assert verdict.blocked is not None and verdict.blocked.category == "test_key"
    assert verdict.blocked.role == "tool"
    assert [h.action for h in verdict.hits] == ["alert", "block"]
    assert [h.category for h in verdict.alerts] == ["email"]
    assert all(SECRET not in repr(h) and MAIL not in repr(h) for h in verdict.hits)
    assert verdict.replacements == {}


def test_redact_numbers_values_per_category_the_same_value_the_same_placeholder() -> None:
    actions = Effective([GuardActions(secret="redact", personal="redact")])
    other = "bob@contoso.com"
    text = f"{MAIL} {SECRET} {MAIL}"
    slots = [slot(text), slot(f"cc {MAIL}", i=1)]
    verdict = judge(slots, scan_slots, actions, fp, "request")
    assert verdict.replacements[("messages", 0, "content")] == ("[EMAIL_1] [TEST_KEY_1] [EMAIL_1]")
    assert verdict.replacements[("messages", 1, "content")] == "cc [EMAIL_1]"
    assert verdict.placeholders is not None
    assert verdict.placeholders.values == {"[EMAIL_1]": MAIL, "[TEST_KEY_1]": SECRET}
    assert other not in verdict.placeholders.values.values()


def test_off_and_log_forward_log_is_recorded() -> None:
    actions = Effective([GuardActions(secret="off", personal="log")])
    verdict = judge([slot(f"{SECRET} {MAIL}")], scan_slots, actions, fp, "request")
    assert [(h.category, h.action) for h in verdict.hits] == [("email", "log")]
    assert verdict.blocked is None and not verdict.replacements and not verdict.alerts


def test_restore_puts_back_only_this_requests_placeholders() -> None:
    values = {"[EMAIL_1]": MAIL}
    text = "to [EMAIL_1], not [EMAIL_2] nor [EMAIL_1"
    assert rewritten(text, restorations(text, values)) == f"to {MAIL}, not [EMAIL_2] nor [EMAIL_1"
    answer = judge(
        [Slot(("choices", 0, "message", "content"), "completion", text)],
        scan_slots, Effective([GuardActions()]), fp, "answer", Placeholders(), values,
    )  # fmt: skip
    assert answer.replacements[("choices", 0, "message", "content")].startswith(f"to {MAIL},")
    assert answer.hits == []  # the restored value is not judged again


def test_decisions_kept_are_bounded_the_rest_counted() -> None:
    text = " ".join([MAIL] * (MAX_HITS + 5))
    verdict = judge([slot(text)], scan_slots, Effective([GuardActions()]), fp, "request")
    assert len(verdict.hits) == MAX_HITS and verdict.more_hits == 5


def test_the_strictest_action_of_several_roles_wins_each_by_its_own_rule() -> None:
    lax = GuardActions(personal="log", categories={"email": "off"}, restore=True)
    masking = GuardActions(personal="redact", restore=True)
    watching = GuardActions(personal="alert", categories={"email": "log"})
    assert Effective([lax, masking]).action("personal", "email") == "redact"
    assert Effective([lax, watching]).action("personal", "email") == "log"
    assert Effective([lax, watching]).action("personal", "phone") == "alert"
    assert Effective([lax, masking]).restore and not Effective([lax, watching]).restore
    assert Effective([GuardActions()]).action("nonsense", "x") == "block"  # unknown: strict
    assert not Effective([GuardActions(secret="off", personal="off", custom="off")]).active
