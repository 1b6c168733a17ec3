"""The seams of the request pipeline: authorisation, admission (limits) and recording.

Each is a small protocol the handler calls at a fixed point::

    authenticate ─► read body ─► resolve ─► authorize ─► admit ─► forward ─► settle ─► record

* :class:`Authorizer` decides whether the principal may make this request (raise
  :class:`~keyguard.errors.PermissionDenied`), from values only.
* :class:`Admission` reserves capacity before forwarding (raise
  :class:`~keyguard.errors.TooManyRequests`) and settles the reservation it returned on the
  real usage afterwards; ``settle`` runs for every admitted request, whatever happened
  upstream.
* :class:`Recorder` receives the finished request context; it must not block (queue the work).

The defaults keep the gateway's behaviour without the corresponding capability configured.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from .request import RequestContext

__all__ = [
    "Authorizer",
    "Admission",
    "Recorder",
    "Screen",
    "AllowAuthenticated",
    "NoLimits",
    "NoScreen",
    "Recorders",
]

H = TypeVar("H")

log = logging.getLogger("keyguard.proxy")


class Authorizer(Protocol):
    def authorize(self, ctx: RequestContext, now: datetime) -> None: ...


class Screen(Protocol):
    """Refuses a request from its address alone, before any credential is looked at (a
    blocked source gets nothing, not even an authentication failure)."""

    def screen(self, ctx: RequestContext) -> None: ...


class NoScreen:
    def screen(self, ctx: RequestContext) -> None:
        return None


class Admission(Protocol[H]):
    """``admit`` reserves and returns what it holds (``None``: nothing); the handler hands it
    back to ``settle`` whatever happened to the request."""

    async def admit(self, ctx: RequestContext) -> H | None: ...

    async def settle(self, ctx: RequestContext, held: H | None) -> None: ...


class Recorder(Protocol):
    def record(self, ctx: RequestContext) -> None: ...


class AllowAuthenticated:
    """Without a policy, an authenticated principal may use every configured deployment."""

    def authorize(self, ctx: RequestContext, now: datetime) -> None:
        return None


class NoLimits:
    async def admit(self, ctx: RequestContext) -> None:
        return None

    async def settle(self, ctx: RequestContext, held: None) -> None:
        return None


class Recorders:
    """Several recorders behind one; a failing recorder never breaks the others."""

    def __init__(self, recorders: Sequence[Recorder]) -> None:
        self._recorders = tuple(recorders)

        self.durable = any(getattr(r, "durable", False) for r in self._recorders)

    def record(self, ctx: RequestContext) -> None:
        for recorder in self._recorders:
            try:
                recorder.record(ctx)
            except Exception:
                log.exception("recorder %s failed for request %s", recorder, ctx.request_id)

    async def record_durably(self, ctx: RequestContext) -> None:
        """Record now, waiting for the recorders that keep records durably (the audit with
        ``durability: before_answer``); their ``RequestError`` (503) propagates."""
        for recorder in self._recorders:
            durably = getattr(recorder, "record_durably", None)
            if durably is not None and getattr(recorder, "durable", False):
                await durably(ctx)
                continue
            try:
                recorder.record(ctx)
            except Exception:
                log.exception("recorder %s failed for request %s", recorder, ctx.request_id)
