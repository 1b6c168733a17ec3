"""What the guardrails decide about one prompt, offline: the service behind
``keyguard guard check`` (a prompt template's CI, a pasted request body).

A finding carries where the value is (the body path, line and column), what it is, the action
the given ``GuardActions`` take on it, and a preview that never shows the value: the length
and, for secrets, the scanner's non-secret prefix (``sk-p…[164 chars]``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from keyguard.guard.actions import Action, GuardActions, action_for
from keyguard.guard.engine import GuardEngine
from keyguard.guard.extract import request_slots
from keyguard.guard.findings import Match, Slot
from keyguard.scan.findings import redact

__all__ = ["CheckFinding", "check_body", "check_text", "guess_operation", "parse_body"]


@dataclass(frozen=True, slots=True)
class CheckFinding:
    path: tuple[str | int, ...]
    role: str
    family: str
    category: str
    detector: str
    action: Action
    line: int
    column: int
    preview: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = list(self.path)
        return data


def _preview(m: Match, value: str) -> str:
    if m.family == "secret" and m.category != "unscanned":
        return redact(value)
    return f"[{len(value)} chars]"


def _finding(slot: Slot, m: Match, actions: GuardActions) -> CheckFinding:
    before = slot.text[: m.start]
    line = before.count("\n") + 1
    column = m.start - (before.rfind("\n") + 1) + 1
    return CheckFinding(
        slot.path, slot.role, m.family, m.category, m.detector,
        action_for(m.family, m.category, actions), line, column,
        _preview(m, slot.text[m.start : m.end]),
    )  # fmt: skip


def check_text(engine: GuardEngine, actions: GuardActions, text: str) -> list[CheckFinding]:
    """Findings in one plain-text prompt."""
    slot = Slot((), "user", text)
    return [_finding(slot, m, actions) for m in engine.scan(text)]


def guess_operation(body: Mapping[str, Any]) -> str:
    """The operation a request body is for, from its keys."""
    if "messages" in body:
        return "chat"
    if "prompt" in body:
        return "completions"
    return "responses"  # ``input`` as a string or items (embeddings input reads the same)


def check_body(
    engine: GuardEngine, actions: GuardActions, body: Mapping[str, Any], operation: str
) -> list[CheckFinding]:
    """Findings in every text of a request body."""
    return [_finding(s, m, actions) for s, m in engine.scan_slots(request_slots(operation, body))]


def parse_body(text: str) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, else ``None``."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
