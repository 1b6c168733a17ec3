"""The ``access.policy`` section of the config: where the roles and bindings come from."""

from __future__ import annotations

from pydantic import Field

from ..core.settings import Frozen

__all__ = ["PolicySettings"]


class PolicySettings(Frozen):
    """Where the policy comes from. Neither set: no policy (every valid key may do anything)."""

    file: str | None = None
    managed: bool = False  # the admin API may add roles and bindings, kept in the store
    reload_interval_s: float = Field(default=5.0, gt=0, le=3600)

    @property
    def configured(self) -> bool:
        return self.file is not None or self.managed
