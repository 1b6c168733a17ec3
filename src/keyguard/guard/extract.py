"""The texts a request or an answer carries, and redactions written back into its body.

``request_slots`` and ``response_slots`` walk a parsed JSON body of a known operation
(chat completions, completions, responses, embeddings) and return every text in it with where
it sits; ``with_replacements`` returns a copy of the body with some slots' text replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keyguard.guard.findings import Slot

__all__ = ["request_slots", "response_slots", "with_replacements"]


def request_slots(operation: str, body: Mapping[str, Any]) -> list[Slot]:
    """Every text of a request body (a placeholder until extraction lands: none)."""
    return []


def response_slots(operation: str, body: Mapping[str, Any]) -> list[Slot]:
    """Every text of an answer body (a placeholder until extraction lands: none)."""
    return []


def with_replacements(body: Mapping[str, Any], texts: Mapping[tuple[str | int, ...], str]) -> Any:
    """A copy of ``body`` with the text at each path replaced (placeholder: unchanged)."""
    return dict(body)
