"""The types the guardrails share: matches in a text, the texts of a body, model verdicts.

A ``Match`` never holds the value it found, only where it is (``start``/``end`` in the text it
was found in) and what it is; whoever needs the value slices the text it scanned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Family", "Match", "Slot", "ModelVerdict", "ModelGuard"]

Family = Literal["secret", "personal", "custom", "attack", "harm"]


@dataclass(frozen=True, slots=True)
class Match:
    """One value found by a local detector.

    ``family`` groups categories for actions (``secret``, ``personal``, ``custom``);
    ``category`` is stable and names the kind (``azure_openai_key``, ``payment_card``,
    ``iban``, ``us_ssn``, ``email``, ``phone``, ``ip_address``, a custom rule's name, ...);
    ``detector`` names the rule that fired (for audit and metrics).
    """

    family: Family
    category: str
    detector: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Slot:
    """One text of a request or answer body.

    ``path`` locates it in the JSON body (keys and list indexes), ``role`` is what carries it:
    ``system``, ``developer``, ``user``, ``assistant``, ``tool`` (a tool result), ``tool_call``
    (arguments the model sent), ``input`` (Responses/embeddings input), ``completion``.
    """

    path: tuple[str | int, ...]
    role: str
    text: str


@dataclass(frozen=True, slots=True)
class ModelVerdict:
    """A model-based check's answer: ``flagged`` with the category (``jailbreak``,
    ``indirect_attack``, ``hate``, ``sexual``, ``violence``, ``self_harm``,
    ``blocklist:NAME``) and its severity where the service gives one."""

    flagged: bool
    category: str | None = None
    severity: int | None = None


class ModelGuard(Protocol):
    """A model-based check over a request's texts (Azure AI Content Safety).

    ``prompts`` are what the user wrote, ``documents`` what came from elsewhere (tool results,
    retrieved documents). Raises ``keyguard.errors.GuardUnavailable`` when it cannot answer in
    time; the caller applies the configured fail-open or fail-closed choice.
    """

    async def check(self, prompts: Sequence[str], documents: Sequence[str]) -> ModelVerdict: ...
