"""The admin API: one table of endpoints, each a thin adapter over :class:`.service.AdminService`.

The same table drives the routes and the OpenAPI description (:mod:`.openapi`), so they cannot
disagree. Every endpoint but ``/admin/openapi.json`` needs a credential (:mod:`.auth`) with at
least the endpoint's role. Request bodies are JSON objects (at most 1 MiB); answers are JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ..core.times import utc_seconds
from ..policy.store import PolicyRevision
from .auth import AdminAuthenticator
from .bodies import (
    MAX_BODY,
    CheckPolicy,
    CreateKey,
    CreateToken,
    Explain,
    PutManaged,
    RotateKey,
    read_json_body,
    validate_body,
)
from .endpoint import Endpoint, Handler, duration
from .observed_api import observed_endpoints
from .service import Actor, AdminService, key_json, token_json
from .usage import USAGE_QUERY, parse_query

__all__ = ["AdminApi", "Endpoint", "MAX_BODY"]


def _revision(revision: PolicyRevision) -> dict[str, Any]:
    return {"version": revision.version, "created_by": revision.created_by}


_REVISION = {
    "type": "object",
    "properties": {"version": {"type": "integer"}, "created_by": {"type": "string"}},
}
_KEY = {"$ref": "#/components/schemas/Key"}
_TOKEN = {"$ref": "#/components/schemas/AdminToken"}
_RELOAD = {
    "type": "object",
    "properties": {
        "status": {"type": "string"},
        "changed": {"type": "array", "items": {"type": "string"}},
        "restart_required": {"type": "array", "items": {"type": "string"}},
    },
}
_USAGE = {"$ref": "#/components/schemas/Usage"}


class AdminApi:
    def __init__(self, service: AdminService, auth: AdminAuthenticator) -> None:
        self.service = service
        self.auth = auth
        self.endpoints = self._table()

    @classmethod
    def table_only(cls) -> list[Endpoint]:
        """The endpoint table with no service behind it: what the OpenAPI description needs."""
        return cls.__new__(cls)._table()

    def add_routes(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, self._wrap(endpoint))

    def _wrap(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            actor = await self.auth.require(request, endpoint.role)
            body: Any = {}
            if endpoint.body is not None:
                body = await read_json_body(request)
                if isinstance(endpoint.body, type):
                    body = validate_body(endpoint.body, body)
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

    async def _create_key(self, r: web.Request, actor: Actor, b: CreateKey) -> tuple[int, Any]:
        record, key = await self.service.create_key(
            actor, b.app, expires_in=duration(b.expires, "expires"), description=b.description
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

    async def _rotate_key(self, r: web.Request, actor: Actor, b: RotateKey) -> tuple[int, Any]:
        result = await self.service.rotate_key(
            actor,
            r.match_info["key_id"],
            grace=duration(b.grace, "grace", allow_zero=True),
            token=b.idempotency_token,
        )
        record = result.record
        return 200, {
            **key_json(record, self.service.now()),
            "key": result.key,
            "previous_valid_until": utc_seconds(record.previous_valid_until),
            "replayed": result.replayed,
        }

    async def _usage(self, r: web.Request, actor: Actor, b: Any) -> tuple[int, Any]:
        return 200, await self.service.usage(actor, parse_query(r.query))

    async def _list_tokens(
        self, r: web.Request, actor: Actor, b: dict[str, Any]
    ) -> tuple[int, Any]:
        now = self.service.now()
        return 200, {
            "tokens": [token_json(t, now) for t in await self.service.list_admin_tokens(actor)]
        }

    async def _create_token(self, r: web.Request, actor: Actor, b: CreateToken) -> tuple[int, Any]:
        record, token = await self.service.create_admin_token(
            actor, name=b.name, role=b.role, expires_in=duration(b.expires, "expires")
        )
        return 201, {**token_json(record, record.created_at), "token": token}

    async def _revoke_token(
        self, r: web.Request, actor: Actor, b: dict[str, Any]
    ) -> tuple[int, Any]:
        record = await self.service.revoke_admin_token(actor, r.match_info["token_id"])
        return 200, token_json(record, self.service.now())

    async def _get_policy(self, r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
        return 200, await self.service.get_policy(actor)

    async def _put_managed(self, r: web.Request, actor: Actor, b: PutManaged) -> tuple[int, Any]:
        revision = await self.service.replace_managed_policy(
            actor, b.document, expected_version=b.expected_version
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

    async def _check(self, r: web.Request, actor: Actor, b: CheckPolicy) -> tuple[int, Any]:
        return 200, await self.service.check_policy(actor, b.document)

    async def _explain(self, r: web.Request, actor: Actor, b: Explain) -> tuple[int, Any]:
        return 200, await self.service.explain(
            actor, b.principal, b.request, groups=b.groups, app_roles=b.app_roles
        )

    async def _reload(self, r: web.Request, actor: Actor, b: dict[str, Any]) -> tuple[int, Any]:
        return 202, await self.service.reload(actor)

    # -- the table ---------------------------------------------------------------------------

    def _table(self) -> list[Endpoint]:
        obj = {"type": "object"}
        return [
            Endpoint(
                "POST",
                "/admin/reload",
                "admin",
                "Reload the configuration file (policy, upstreams, limits, TLS certificates) "
                "with no request dropped; an invalid file is refused and changes nothing. The "
                "answer lists what changed and what needs a restart",
                "process",
                self._reload,
                response=_RELOAD,
                status=202,
            ),
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
                body=CreateKey,
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
                body=RotateKey,
                response=_KEY,
            ),
            Endpoint(
                "GET",
                "/admin/usage",
                "viewer",
                "Each limit and budget that applies: its use across every replica (read, "
                "not charged), what remains, when it resets; spend from the audit log",
                "usage",
                self._usage,
                response=_USAGE,
                query=USAGE_QUERY,
            ),
            *observed_endpoints(self),
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
                body=CreateToken,
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
                body=PutManaged,
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
                body=CheckPolicy,
            ),
            Endpoint(
                "POST",
                "/admin/policy/explain",
                "viewer",
                "Which binding allows a request, or why it is denied",
                "policy",
                self._explain,
                body=Explain,
            ),
        ]
