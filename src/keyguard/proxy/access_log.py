"""The access log: one JSON line per request on the ``keyguard.access`` logger.

It carries who (key id, app), what (route family, operation, the deployment once known to be
configured), the outcome (status, reason, upstream status, streaming, disconnects, usage) and
timings. Never a credential, a prompt, a completion, or any request text that was not validated
against the configuration (an unknown deployment name is not echoed).
"""

from __future__ import annotations

import logging
import time

from ..core.logs import AccessLine
from ..core.request import RequestContext

__all__ = ["AccessLog"]

log = logging.getLogger("keyguard.access")


class AccessLog:
    def record(self, ctx: RequestContext) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        route = ctx.route
        principal = ctx.principal
        usage = ctx.usage
        entry = {
            "ts": round(time.time(), 3),
            "request_id": ctx.request_id,
            "method": ctx.method,
            "family": route.family if route else None,
            "operation": route.operation.name if route else None,
            "deployment": ctx.deployment,
            "status": ctx.status,
            "reason": ctx.reason,
            "key_id": principal.key_id if principal else None,
            "app": principal.app if principal else None,
            "upstream_status": ctx.upstream_status or None,
            "stream": ctx.streamed,
            "client_disconnected": ctx.client_disconnected or None,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "ms": round((time.perf_counter() - ctx.started) * 1000, 3),
            "upstream_ms": round(ctx.upstream_ms, 3) if ctx.upstream_status else None,
            "remote": ctx.remote,
        }
        log.info(AccessLine(entry), extra={"fields": entry})
