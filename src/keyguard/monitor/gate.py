"""The audit gate: no request is forwarded that the audit could not record.

:class:`AuditGate` is an :class:`~keyguard.core.hooks.Authorizer` around the others: once a
request is allowed, it looks at one flag (:attr:`Monitor.audit_full
<keyguard.monitor.pipeline.Monitor.audit_full>`, O(1)). While the audit queue is full (the
store is down, or slower than the traffic), or the detectors' backlog is at its bound (a
flood the detectors cannot keep up with: a request served then would go unseen), it either
refuses the request with 503 and ``Retry-After`` in Azure's error shape
(``monitor.audit.on_full: refuse``, the default: fail closed) or lets it through and counts
it (``serve_unaudited``: the queue raised a critical security event; records that do not fit
are dropped and counted). Requests refused by the
checks before it (401, 403, ...) are not forwarded and so never need it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from ..core.hooks import Authorizer
from ..core.request import RequestContext
from ..errors import RequestError

__all__ = ["AuditGate", "AuditUnavailable", "RETRY_AFTER_S"]

RETRY_AFTER_S = 1


class AuditUnavailable(RequestError):
    """503: the audit cannot take the record of this request right now."""

    status = 503
    code = "ServiceUnavailable"


class _Capacity(Protocol):
    @property
    def audit_full(self) -> bool: ...

    audit_refused: int
    served_while_full: int


class AuditGate:
    def __init__(self, inner: Authorizer, capacity: _Capacity, *, refuse: bool) -> None:
        self._inner = inner
        self._capacity = capacity
        self._refuse = refuse

    def authorize(self, ctx: RequestContext, now: datetime) -> None:
        self._inner.authorize(ctx, now)
        capacity = self._capacity
        if not capacity.audit_full:
            return
        if not self._refuse:
            capacity.served_while_full += 1
            return
        capacity.audit_refused += 1
        raise AuditUnavailable(
            "Keyguard cannot record and watch this request right now (its audit queue or its "
            "detectors' backlog is full), so it is not forwarded; retry after "
            f"{RETRY_AFTER_S} second(s).",
            reason="audit_full",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
