"""What the audit log says about a request, an admin action and a security event.

Every record body is JSON without secrets. A request record is the monitor's
:class:`~keyguard.core.observation.Observation` (who, what, outcome, tokens, cost, timing,
source, client) plus the decision; with ``record_content`` on it also carries the prompt and the
completion, secrets redacted and cut to ``max_content_chars``.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..core.observation import Observation
from ..core.times import utc_micro
from ..events import AdminAction, SecurityEvent
from .redact import redact_json, redact_text

if TYPE_CHECKING:
    from ..core.request import RequestContext

__all__ = ["request_record", "admin_record", "security_record", "content_of"]


def request_record(obs: Observation, content: dict[str, Any] | None = None) -> dict[str, Any]:
    data = obs.to_record()
    data["decision"] = "allow" if obs.upstream_status else "deny"
    if content is not None:
        data["content"] = content
    return data


def admin_record(event: AdminAction) -> dict[str, Any]:
    return {
        "at": utc_micro(event.created),
        "actor": event.actor,
        "action": event.action,
        "target": redact_text(event.target),
        "before": _plain(event.before),
        "after": _plain(event.after),
    }


def security_record(event: SecurityEvent) -> dict[str, Any]:
    return {
        "at": utc_micro(event.created),
        "kind": event.kind,
        "severity": event.severity,
        "summary": redact_text(event.summary),
        "key_id": event.key_id,
        "app": event.app,
        "upstream": event.upstream,
        "source": None if event.source is None else redact_text(event.source),
        "evidence": _plain(event.evidence),
    }


def _plain(value: Any) -> Any:
    """JSON-ready, secrets redacted (events promise none; this is the belt to those braces)."""
    if value is None:
        return None
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return redact_json(orjson.loads(orjson.dumps(value, default=str)))


def content_of(ctx: RequestContext, limit: int) -> dict[str, Any]:
    """The prompt and completion of a request, secrets redacted, cut to ``limit`` characters.
    A prompt in which the guardrails found something they did not redact (blocked, alerted or
    logged: the value is still in it) is withheld; a redacted one is kept as forwarded."""
    payload = ctx.payload or {}
    if any(hit.get("where") == "request" and hit.get("action") != "redact"
           for hit in ctx.guardrails):  # fmt: skip
        payload = {"prompt": _WITHHELD}
    prompt: Any = None
    for name in ("messages", "prompt", "input"):
        if name in payload:
            prompt = payload[name]
            break
    prompt_text = orjson.dumps(prompt).decode() if prompt is not None else ""
    if ctx.streamed_text:
        completion = "".join(ctx.streamed_text)
    elif ctx.response_body is not None:
        completion = ctx.response_body.decode("utf-8", "replace")
    else:
        completion = ""
    return {"prompt": _cut(prompt_text, limit), "completion": _cut(completion, limit)}


_WITHHELD = "(withheld: the guardrails found a value in it; see the request's guardrails)"


def _cut(text: str, limit: int) -> str:
    # Redact before cutting (a cut secret is no longer recognised), with a margin wide enough
    # for the longest tokens the detectors know.
    return redact_text(text[: limit + 8192])[:limit]
