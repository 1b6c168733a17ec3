"""A role's ``guardrails:``: what it does with what the guardrails find (pure values).

::

    roles:
      support-bot:
        operations: [chat]
        deployments: [gpt-4o]
        guardrails:
          secret: block          # the family's action (default: block)
          personal: redact       # (default: alert)
          custom: block          # (default: block)
          attack: off            # prompt attacks (default: off)
          harm: off              # harmful content (default: off)
          categories: {email: log, payment_card: block}   # overrides per category
          restore: true          # put redacted values back into this caller's answer

Actions, from the strictest: ``block`` (the request is refused, or the answer cut),
``redact`` (the value is replaced by a typed placeholder before it leaves), ``alert``
(forwarded, a security event raised), ``log`` (forwarded, an audit record only), ``off``.

When several roles allow one request, :class:`Effective` combines them: for each match the
strictest of the roles' actions wins (each role judged by its own override, else its family's
action), and values are restored only when every role restores.
The model lives here, below the guardrails package, so a role can carry it;
:mod:`keyguard.guard.actions` is where the gateway reads it from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator

__all__ = ["Action", "ACTIONS", "DEFAULTS", "Effective", "FAMILIES", "GuardActions", "rank"]


def _yaml_off(value: Any) -> Any:
    """YAML 1.1 reads a bare ``off`` as ``false``: in an action's place it means ``off``."""
    return "off" if value is False else value


Action = Annotated[Literal["block", "redact", "alert", "log", "off"], BeforeValidator(_yaml_off)]
#: the actions from the most lenient to the strictest
ACTIONS: tuple[Action, ...] = ("off", "log", "alert", "redact", "block")
FAMILIES = ("secret", "personal", "custom", "attack", "harm")
_RANK = {action: i for i, action in enumerate(ACTIONS)}
_CATEGORY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.:")


def rank(action: Action) -> int:
    """How strict ``action`` is (``off`` 0 ... ``block`` 4)."""
    return _RANK[action]


class GuardActions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    secret: Action = "block"
    personal: Action = "alert"
    custom: Action = "block"
    attack: Action = "off"
    harm: Action = "off"
    categories: dict[str, Action] = {}
    restore: bool = False  # redacted values put back into the same caller's answer

    @field_validator("categories")
    @classmethod
    def _category_names(cls, v: dict[str, Action]) -> dict[str, Action]:
        for name in v:
            if not name or len(name) > 64 or not set(name) <= _CATEGORY_CHARS:
                raise ValueError(
                    f"{name[:40]!r} is not a category name (lower-case letters, digits, "
                    "'_', '-', '.', ':'; e.g. email, payment_card, azure_openai_key)"
                )
        return v

    def __hash__(self) -> int:  # frozen, with a dict inside: hashed by its content
        return hash(
            (
                self.secret,
                self.personal,
                self.custom,
                self.attack,
                self.harm,
                tuple(sorted(self.categories.items())),
                self.restore,
            )
        )

    @property
    def active(self) -> bool:
        """Some family or category does something: the texts must be scanned."""
        return any(getattr(self, f) != "off" for f in FAMILIES) or any(
            a != "off" for a in self.categories.values()
        )

    def action(self, family: str, category: str) -> Action:
        """The action for one match: the category's override, else its family's."""
        override = self.categories.get(category)
        if override is not None:
            return override
        found: Action = getattr(self, family, "block")  # an unknown family: the strictest
        return found


DEFAULT = GuardActions()


class Effective:
    """The guardrails in force for one request: those of every role that allows it.

    ``action`` is the strictest of the roles' actions for a match (each role judged by its
    own override or family action), ``restore`` holds only when every role restores. One
    object per combination of roles, kept by the compiled policy; decisions are cached (a
    few dozen categories at most)."""

    __slots__ = ("roles", "restore", "active", "_cache")

    def __init__(self, roles: Sequence[GuardActions]) -> None:
        self.roles = tuple(roles) or (DEFAULT,)
        self.restore = all(r.restore for r in self.roles)
        self.active = any(r.active for r in self.roles)
        self._cache: dict[tuple[str, str], Action] = {}

    def action(self, family: str, category: str) -> Action:
        key = (family, category)
        found = self._cache.get(key)
        if found is None:
            found = "off"
            for role in self.roles:
                own = role.action(family, category)
                if _RANK[own] > _RANK[found]:
                    found = own
            if len(self._cache) < 4096:
                self._cache[key] = found
        return found


DEFAULTS = Effective((DEFAULT,))
