"""The base of every settings model: frozen once validated, unknown keys refused."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from ..durations import parse_duration

__all__ = ["Frozen", "GUID", "Duration"]

# Tenant, group, client and object ids.
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _to_timedelta(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith(("P", "-P")):  # ISO 8601: pydantic's
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


#: ``30d``, ``12h``, ``30m``, ``45s``, a number of seconds, or ISO 8601
Duration = Annotated[timedelta, BeforeValidator(_to_timedelta)]
