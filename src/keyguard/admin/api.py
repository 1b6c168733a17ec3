"""The admin API: one table of endpoints, each a thin adapter over :class:`.service.AdminService`.

The same table drives the routes and the OpenAPI description (:mod:`.openapi`), so they cannot
disagree. Every endpoint but ``/admin/openapi.json`` needs a credential (:mod:`.auth`) with at
least the endpoint's role. Request bodies are JSON objects (at most 1 MiB); answers are JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from aiohttp import web

from ..core.times import utc_seconds
from ..durations import parse_duration
from ..errors import BadRequest
from ..policy.store import PolicyRevision
from .auth import AdminAuthenticator
from .service import Actor, AdminService, key_json, token_json
from .settings import AdminRole

__all__ = ["AdminApi", "Endpoint"]

Handler = Callable[[web.Request, Actor, dict[str, Any]], Awaitable[tuple[int, Any]]]
MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    role: AdminRole
    summary: str
    tag: str
    handler: Handler
    body: dict[str, Any] | None = None  # JSON schema of the request body
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    status: int = 200


def _str(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required", reason="invalid_body")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string", reason="invalid_body")
    return value


def _duration(body: dict[str, Any], name: str, *, allow_zero: bool = False) -> timedelta | None:
    value = _str(body, name)
    if value is None:
        return None
    try:
        return parse_duration(value, allow_zero=allow_zero)
    except ValueError as exc:
        raise BadRequest(str(exc), reason="invalid_body") from None


def _revision(revision: PolicyRevision) -> dict[str, Any]:
    return {"version": revision.version, "created_by": revision.created_by}


_REVISION = {
    "type": "object",
    "properties": {"version": {"type": "integer"}, "created_by": {"type": "string"}},
}
_KEY = {"$ref": "#/components/schemas/Key"}
_TOKEN = {"$ref": "#/components/schemas/AdminToken"}


class AdminApi:
    def __init__(self, service: AdminService, auth: AdminAuthenticator) -> None:
        self.service = service
        self.auth = auth
        self.endpoints = self._table()

    def add_routes(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, self._wrap(endpoint))

    def _wrap(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            actor = await self.auth.require(request, endpoint.role)
            body: dict[str, Any] = {}
            if endpoint.body is not None:
                body = await _json_body(request)
            status, payload = await endpoint.handler(request, actor, body)
            return web.Response(
                status=status, body=orjson.dumps(payload), content_type="application/json"
            )

        return handle

    # -- handlers --------------------------------------------------------------------------

    async def _whoami(self, r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
        return 200, await self.service.whoami(actor)

    async def _list_keys(self, r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
        include = r.query.get("all", "").lower() in ("1", "true", "yes")
        records = await self.service.list_keys(
            actor, app=r.query.get("app") or None, include_revoked=include
        )
        now = self.service.now()
        return 200, {"keys": [key_json(k, now) for k in records]}

    async def _create_key(self, r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
        app = _str(b, "app", required=True)
        assert app is not None
        record, key = await self.service.create_key(
            actor,
            app,
            expires_in=_duration(b, "expires"),
            description=_str(b, "description") or "",
        )
        return 201, {**key_json(record, record.created_at), "key": key}

    async def _get_key(self, r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
        record = await self.service.get_key(actor, r.match_info["key_id"])
        return 200, key_json(record, self.service.now())

    def _change_key(self, change: str) -> Handler:
        async def handler(r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
            record = await self.service.change_key(actor, r.match_info["key_id"], change)
            return 200, key_json(record, self.service.now())

        return handler

    async def _rotate_key(self, r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
        result = await self.service.rotate_key(
            actor,
            r.match_info["key_id"],
            grace=_duration(b, "grace", allow_zero=True),
            token=_str(b, "idempotency_token"),
        )
        record = result.record
        return 200, {
            **key_json(record, self.service.now()),
            "key": result.key,
            "previous_valid_until": utc_seconds(record.previous_valid_until),
            "replayed": result.replayed,
        }

    async def _list_tokens(
        self, r: web.Request, actor: Actor, b: dict[str, Any]
    ) -> tuple[int, Any]:
        now = self.service.now()
        return 200, {
            "tokens": [token_json(t, now) for t in await self.service.list_admin_tokens(actor)]
        }

    async def _create_token(
        self, r: web.Request, actor: Actor, b: dict[str, Any]
    ) -> tuple[int, Any]:
        record, token = await self.service.create_admin_token(
            actor,
            name=_str(b, "name", required=True) or "",
            role=_str(b, "role", required=True) or "",
            expires_in=_duration(b, "expires"),
        )
        return 201, {**token_json(record, record.created_at), "token": token}

    async def _revoke_token(
        self, r: web.Request, actor: Actor, b: dict[str, Any]
    ) -> tuple[int, Any]:
        record = await self.service.revoke_admin_token(actor, r.match_info["token_id"])
        return 200, token_json(record, self.service.now())

    async def _get_policy(self, r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
        return 200, await self.service.get_policy(actor)

    async def _put_managed(
        self, r: web.Request, actor: Actor, b: dict[str, Any]
    ) -> tuple[int, Any]:
        version = b.get("expected_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise BadRequest(
                "'expected_version' (an integer >= 0) is required", reason="invalid_body"
            )
        revision = await self.service.replace_managed_policy(
            actor, b.get("document"), expected_version=version
        )
        return 200, _revision(revision)

    async def _put_role(self, r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
        return 200, _revision(await self.service.put_role(actor, r.match_info["name"], b))

    async def _delete_role(
        self, r: web.Request, actor: Actor, b: dict[str, Any]
    ) -> tuple[int, Any]:
        return 200, _revision(await self.service.delete_role(actor, r.match_info["name"]))

    async def _put_binding(
        self, r: web.Request, actor: Actor, b: dict[str, Any]
    ) -> tuple[int, Any]:
        spec = {**b, "name": r.match_info["name"]}
        return 200, _revision(await self.service.put_binding(actor, spec))

    async def _delete_binding(
        self, r: web.Request, actor: Actor, b: dict[str, Any]
    ) -> tuple[int, Any]:
        return 200, _revision(await self.service.delete_binding(actor, r.match_info["name"]))

    async def _check(self, r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
        return 200, await self.service.check_policy(actor, b.get("document"))

    async def _explain(self, r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
        principal = _str(b, "principal", required=True) or ""
        request = b.get("request")
        if not isinstance(request, str | dict):
            raise BadRequest("'request' must be a string or an object", reason="invalid_body")
        groups, app_roles = b.get("groups", []), b.get("app_roles", [])
        if not all(isinstance(x, str) for x in [*groups, *app_roles]):
            raise BadRequest("'groups' and 'app_roles' are lists of strings", reason="invalid_body")
        return 200, await self.service.explain(
            actor, principal, request, groups=groups, app_roles=app_roles
        )

    # -- the table ---------------------------------------------------------------------------

    def _table(self) -> list[Endpoint]:
        obj = {"type": "object"}
        doc = {"$ref": "#/components/schemas/PolicyDocument"}
        return [
            Endpoint(
                "GET",
                "/admin/whoami",
                "viewer",
                "Who the credential is, and its role",
                "session",
                self._whoami,
            ),
            Endpoint(
                "GET",
                "/admin/keys",
                "viewer",
                "List Keyguard keys (?app=NAME&all=true)",
                "keys",
                self._list_keys,
                response={
                    "type": "object",
                    "properties": {"keys": {"type": "array", "items": _KEY}},
                },
            ),
            Endpoint(
                "POST",
                "/admin/keys",
                "operator",
                "Create a Keyguard key; the answer shows it once",
                "keys",
                self._create_key,
                body={
                    "type": "object",
                    "required": ["app"],
                    "properties": {
                        "app": {"type": "string"},
                        "expires": {"type": "string", "example": "90d"},
                        "description": {"type": "string"},
                    },
                },
                response=_KEY,
                status=201,
            ),
            Endpoint(
                "GET",
                "/admin/keys/{key_id}",
                "viewer",
                "One Keyguard key",
                "keys",
                self._get_key,
                response=_KEY,
            ),
            Endpoint(
                "POST",
                "/admin/keys/{key_id}/revoke",
                "operator",
                "Revoke a key",
                "keys",
                self._change_key("revoke"),
                response=_KEY,
            ),
            Endpoint(
                "POST",
                "/admin/keys/{key_id}/suspend",
                "operator",
                "Suspend a key",
                "keys",
                self._change_key("suspend"),
                response=_KEY,
            ),
            Endpoint(
                "POST",
                "/admin/keys/{key_id}/resume",
                "operator",
                "Lift a suspension",
                "keys",
                self._change_key("resume"),
                response=_KEY,
            ),
            Endpoint(
                "POST",
                "/admin/keys/{key_id}/rotate",
                "operator",
                "Give a key a new secret; the old one works for the grace period. The answer "
                "shows the new key once; repeating the call with the same idempotency_token "
                "returns the same key",
                "keys",
                self._rotate_key,
                body={
                    "type": "object",
                    "properties": {
                        "grace": {"type": "string", "example": "1h"},
                        "idempotency_token": {"type": "string"},
                    },
                },
                response=_KEY,
            ),
            Endpoint(
                "GET",
                "/admin/tokens",
                "admin",
                "List admin tokens",
                "admin tokens",
                self._list_tokens,
                response={
                    "type": "object",
                    "properties": {"tokens": {"type": "array", "items": _TOKEN}},
                },
            ),
            Endpoint(
                "POST",
                "/admin/tokens",
                "admin",
                "Create an admin token; the answer shows it once",
                "admin tokens",
                self._create_token,
                body={
                    "type": "object",
                    "required": ["name", "role"],
                    "properties": {
                        "name": {"type": "string"},
                        "role": {"type": "string", "enum": ["viewer", "operator", "admin"]},
                        "expires": {"type": "string", "example": "30d"},
                    },
                },
                response=_TOKEN,
                status=201,
            ),
            Endpoint(
                "POST",
                "/admin/tokens/{token_id}/revoke",
                "admin",
                "Revoke an admin token",
                "admin tokens",
                self._revoke_token,
                response=_TOKEN,
            ),
            Endpoint(
                "GET",
                "/admin/policy",
                "viewer",
                "The policy in force: file, managed document, effective",
                "policy",
                self._get_policy,
                response=obj,
            ),
            Endpoint(
                "PUT",
                "/admin/policy/managed",
                "admin",
                "Replace the managed policy document (compare-and-set)",
                "policy",
                self._put_managed,
                body={
                    "type": "object",
                    "required": ["document", "expected_version"],
                    "properties": {"document": doc, "expected_version": {"type": "integer"}},
                },
                response=_REVISION,
            ),
            Endpoint(
                "PUT",
                "/admin/policy/roles/{name}",
                "admin",
                "Add or replace a managed role",
                "policy",
                self._put_role,
                body={"$ref": "#/components/schemas/RoleSpec"},
                response=_REVISION,
            ),
            Endpoint(
                "DELETE",
                "/admin/policy/roles/{name}",
                "admin",
                "Remove a managed role",
                "policy",
                self._delete_role,
                response=_REVISION,
            ),
            Endpoint(
                "PUT",
                "/admin/policy/bindings/{name}",
                "admin",
                "Add or replace a managed binding",
                "policy",
                self._put_binding,
                body={"$ref": "#/components/schemas/BindingSpec"},
                response=_REVISION,
            ),
            Endpoint(
                "DELETE",
                "/admin/policy/bindings/{name}",
                "admin",
                "Remove a managed binding",
                "policy",
                self._delete_binding,
                response=_REVISION,
            ),
            Endpoint(
                "POST",
                "/admin/policy/check",
                "viewer",
                "Validate a policy document; problems and warnings",
                "policy",
                self._check,
                body={"type": "object", "properties": {"document": doc}},
            ),
            Endpoint(
                "POST",
                "/admin/policy/explain",
                "viewer",
                "Which binding allows a request, or why it is denied",
                "policy",
                self._explain,
                body={
                    "type": "object",
                    "required": ["principal", "request"],
                    "properties": {
                        "principal": {"type": "string", "example": "app:billing"},
                        "request": {"type": "string", "example": "chat gpt-4o max_tokens=500"},
                        "groups": {"type": "array", "items": {"type": "string"}},
                        "app_roles": {"type": "array", "items": {"type": "string"}},
                    },
                },
            ),
        ]


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadRequest(
            "Send a JSON body with 'Content-Type: application/json'.", reason="content_type"
        )
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise BadRequest(f"The body is larger than {MAX_BODY} bytes.", reason="body_too_large")
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise BadRequest("The body is not valid JSON.", reason="malformed_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", reason="malformed_json")
    return body
