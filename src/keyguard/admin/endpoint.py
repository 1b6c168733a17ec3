"""One row of the admin API's endpoint table (:mod:`.api`), which drives both the routes and the
OpenAPI description, and the parsing the handlers share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web

from ..durations import parse_duration
from ..errors import BadRequest
from .bodies import Body
from .recording import Actor
from .settings import AdminRole

__all__ = ["Endpoint", "Handler", "duration"]

Handler = Callable[[web.Request, Actor, Any], Awaitable[tuple[int, Any]]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    role: AdminRole
    summary: str
    tag: str
    handler: Handler
    # the request body: a model of .bodies (validated), or a JSON schema the service validates
    body: type[Body] | dict[str, Any] | None = None
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    status: int = 200
    query: Mapping[str, str] = field(default_factory=dict)  # name -> description


def duration(value: str | None, name: str, *, allow_zero: bool = False) -> timedelta | None:
    """A duration a caller gave (``24h``); ``None`` stays; anything else is a 400."""
    if value is None:
        return None
    try:
        return parse_duration(value, allow_zero=allow_zero)
    except ValueError as exc:
        raise BadRequest(f"'{name}': {exc}", reason="invalid_body") from None
