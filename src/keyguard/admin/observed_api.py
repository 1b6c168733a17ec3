"""The admin API's endpoints over what the gateway observed: incidents (list, acknowledge,
resolve) and the audit chain's verification. Rows of the endpoint table (:mod:`.endpoint`)
like the rest of :mod:`.api`, over the same service functions the CLI and the console call."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from ..errors import BadRequest
from .endpoint import Endpoint, duration
from .recording import Actor
from .service import AdminService

__all__ = ["observed_endpoints"]

_INCIDENT = {"$ref": "#/components/schemas/Incident"}
_VERIFICATION = {
    "type": "object",
    "properties": {
        "last": {"type": ["object", "null"], "description": "the last run's result"},
        "running": {"type": "boolean"},
        "running_since": {"type": ["string", "null"]},
        "progress": {"type": ["object", "null"], "description": "the run under way"},
        "started": {"type": "boolean", "description": "whether this call started a run"},
    },
}


class _Api(Protocol):
    service: AdminService


def observed_endpoints(api: _Api) -> list[Endpoint]:
    """The rows; ``api.service`` is read when a request comes (the OpenAPI description
    builds the table with no service)."""

    async def list_alerts(r: web.Request, actor: Actor, b: Any) -> tuple[int, Any]:
        since = r.query.get("since")
        try:
            limit = int(r.query.get("limit", "100"))
        except ValueError:
            raise BadRequest("'limit' must be a whole number", reason="invalid_query") from None
        incidents = await api.service.list_incidents(
            actor,
            since=api.service.now() - d if (d := duration(since, "since")) else None,
            status=r.query.get("status"),
            limit=limit,
        )
        return 200, {"incidents": [i.to_json() for i in incidents]}

    async def acknowledge(r: web.Request, actor: Actor, b: Any) -> tuple[int, Any]:
        incident = await api.service.acknowledge_incident(actor, r.match_info["incident_id"])
        return 200, incident.to_json()

    async def resolve(r: web.Request, actor: Actor, b: Any) -> tuple[int, Any]:
        incident, lifted = await api.service.resolve_incident(actor, r.match_info["incident_id"])
        return 200, {**incident.to_json(), "throttles_lifted": lifted}

    async def verification(r: web.Request, actor: Actor, b: Any) -> tuple[int, Any]:
        return 200, await api.service.audit_verification(actor)

    async def verify(r: web.Request, actor: Actor, b: Any) -> tuple[int, Any]:
        return 202, await api.service.verify_audit(actor)

    return [
        Endpoint(
            "GET",
            "/admin/alerts",
            "viewer",
            "Incidents, newest first (?since=24h&status=open&limit=100; status: open, "
            "acknowledged, resolved or unresolved): detector findings and the security "
            "events raised elsewhere, with their evidence and the responses taken",
            "alerts",
            list_alerts,
            response={
                "type": "object",
                "properties": {"incidents": {"type": "array", "items": _INCIDENT}},
            },
        ),
        Endpoint(
            "POST",
            "/admin/alerts/{incident_id}/acknowledge",
            "operator",
            "Acknowledge an open incident (who and when are kept): it stays acknowledged "
            "while its finding repeats (the count grows) until it is resolved; again is "
            "no change; a resolved incident is a 409",
            "alerts",
            acknowledge,
            response=_INCIDENT,
        ),
        Endpoint(
            "POST",
            "/admin/alerts/{incident_id}/resolve",
            "operator",
            "Mark an incident resolved and lift the throttles it put in place (a "
            "suspended key stays suspended); a later finding opens a new incident",
            "alerts",
            resolve,
            response=_INCIDENT,
        ),
        Endpoint(
            "GET",
            "/admin/audit/verification",
            "viewer",
            "The whole audit chain's verification (what 'keyguard audit verify' checks), "
            "run in the background: the last result (verified; broken, naming where; "
            "incomplete, saying how far it got; null before the first) and the run under "
            "way. Starts one when there is none or the last is over an hour old",
            "audit",
            verification,
            response=_VERIFICATION,
        ),
        Endpoint(
            "POST",
            "/admin/audit/verification",
            "operator",
            "Start a run of the whole audit chain's verification now, unless one is "
            "running (at most one at a time, stopped after 5 minutes)",
            "audit",
            verify,
            response=_VERIFICATION,
            status=202,
        ),
    ]
