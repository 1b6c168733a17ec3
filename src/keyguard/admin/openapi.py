"""The OpenAPI 3.1 description of the admin API, built from the endpoint table (:mod:`.api`).

Served at ``GET /admin/openapi.json`` (no credential: it describes, it reveals nothing) and
printed by ``keyguard admin openapi``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from ..policy.document import BindingSpec, PolicyDocument, RoleSpec
from .api import Endpoint
from .usage import USAGE_SCHEMA

__all__ = ["openapi_document"]

_PARAM = re.compile(r"\{([a-z_]+)\}")
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "problems": {"type": "array", "items": {"type": "string"}},
            },
        }
    },
}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_KEY = {
    "type": "object",
    "properties": {
        "key_id": {"type": "string"},
        "app": {"type": "string"},
        "state": {"type": "string", "enum": ["active", "expired", "revoked", "suspended"]},
        "created_at": _TIME,
        "expires_at": _TIME,
        "revoked_at": _TIME,
        "suspended_at": _TIME,
        "description": {"type": "string"},
        "key": {"type": "string", "description": "only in the answer that creates the key"},
    },
}
_TOKEN = {
    "type": "object",
    "properties": {
        "token_id": {"type": "string"},
        "name": {"type": "string"},
        "role": {"type": "string", "enum": ["viewer", "operator", "admin"]},
        "state": {"type": "string", "enum": ["active", "expired", "revoked"]},
        "created_at": _TIME,
        "created_by": {"type": "string"},
        "expires_at": _TIME,
        "revoked_at": _TIME,
        "token": {"type": "string", "description": "only in the answer that creates the token"},
    },
}
_INCIDENT = {
    "type": "object",
    "description": "A detector finding, or a security event raised elsewhere (a raw Azure key "
    "presented, a leak the scanner found, a budget's soft threshold, ...), grouped per rule "
    "and subject",
    "properties": {
        "id": {"type": "string"},
        "rule": {"type": "string"},
        "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
        "subject": {"type": "string", "example": "key:4fT9qZ1mB7xK"},
        "summary": {"type": "string"},
        "status": {
            "type": "string",
            "enum": ["open", "acknowledged", "resolved"],
            "description": "acknowledged: an operator took it on; repeats still count on it",
        },
        "key_id": {"type": ["string", "null"]},
        "app": {"type": ["string", "null"]},
        "source": {"type": ["string", "null"]},
        "count": {"type": "integer"},
        "created_at": {"type": "number", "description": "epoch seconds"},
        "updated_at": {"type": "number", "description": "epoch seconds: last seen"},
        "acknowledged_by": {"type": ["string", "null"], "example": "admin-token:Q2w9Rt5yUi3o"},
        "acknowledged_at": {"type": ["number", "null"], "description": "epoch seconds"},
        "evidence": {"type": "object"},
        "actions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the responses taken (alert, throttle, suspend_key, rotate_upstream)",
        },
    },
}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": _ERROR,
        "Key": _KEY,
        "AdminToken": _TOKEN,
        "Incident": _INCIDENT,
        "Usage": USAGE_SCHEMA,
    }
    for model in (PolicyDocument, RoleSpec, BindingSpec):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _errors(role: str) -> dict[str, Any]:
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "400": {"description": "Invalid request or policy", **ref},
        "401": {"description": "No valid admin credential", **ref},
        "403": {"description": f"Needs the {role} role", **ref},
        "404": {"description": "No such key, token, role or binding", **ref},
        "409": {"description": "Conflict (policy version, names in the policy file)", **ref},
        "503": {"description": "The store is unavailable", **ref},
    }


def openapi_document(endpoints: Sequence[Endpoint], *, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        operation: dict[str, Any] = {
            "summary": ep.summary,
            "tags": [ep.tag],
            "operationId": f"{ep.method.lower()}_{ep.path.strip('/').replace('/', '_')}".replace(
                "{", ""
            ).replace("}", ""),
            "security": [{"bearer": []}],
            "x-keyguard-role": ep.role,
            "responses": {
                str(ep.status): {
                    "description": "Success",
                    "content": {"application/json": {"schema": ep.response}},
                },
                **_errors(ep.role),
            },
        }
        params = _PARAM.findall(ep.path)
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if ep.query:
            operation.setdefault("parameters", []).extend(
                {"name": q, "in": "query", "required": False, "description": text,
                 "schema": {"type": "string"}}
                for q, text in ep.query.items()
            )  # fmt: skip
        if ep.body is not None:
            schema = ep.body if isinstance(ep.body, dict) else _model_schema(ep.body)
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Keyguard admin API",
            "version": version,
            "description": (
                "The admin port of Keyguard. Authenticate with 'Authorization: Bearer <admin "
                "token>' (keyguard admin tokens create) or an Entra ID token of a configured "
                "admin group. Roles: viewer < operator < admin."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An admin token (kga_...) or an Entra ID access token",
                }
            },
        },
    }


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A body model's JSON schema, without pydantic's titles."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    properties = schema.get("properties", {})
    for prop in properties.values():
        prop.pop("title", None)
    if "document" in properties:  # validated by the service as a PolicyDocument
        properties["document"] = {"$ref": "#/components/schemas/PolicyDocument"}
    return schema
