"""The admin API's request bodies, as strict models: one place that says what each endpoint
takes, used to validate every request (a wrong type or an unknown field is a 400 that names
the field) and to describe it in the OpenAPI document; and the reading of a body itself
(``read_json_body``: at most ``MAX_BODY`` bytes, a JSON object nested at most ``MAX_DEPTH``
levels)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import BadRequest
from .settings import AdminRole

__all__ = [
    "Body",
    "CheckPolicy",
    "CreateKey",
    "CreateToken",
    "Explain",
    "PutManaged",
    "RotateKey",
    "validate_body",
    "read_json_body",
    "MAX_BODY",
    "MAX_DEPTH",
]

MAX_BODY = 1024 * 1024
#: objects and arrays inside one another (a policy document goes 5 deep). orjson reads 1,024;
#: a value much deeper cannot be printed (the interpreter's recursion limit) nor written back
#: (orjson writes 254), so it would be an internal error wherever it is shown or stored.
MAX_DEPTH = 32


class Body(BaseModel):
    # strict: no coercion ("5" is not 5, "abc" is not a list); unknown fields refused
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


B = TypeVar("B", bound=Body)


class CreateKey(Body):
    app: str = Field(max_length=64)
    expires: str | None = Field(default=None, examples=["90d"], max_length=40)
    description: str = Field(default="", max_length=256)


class RotateKey(Body):
    grace: str | None = Field(default=None, examples=["1h"], max_length=40)
    idempotency_token: str | None = Field(default=None, max_length=128)


class CreateToken(Body):
    name: str = Field(max_length=64)
    role: AdminRole
    expires: str | None = Field(default=None, examples=["30d"], max_length=40)


class PutManaged(Body):
    document: dict[str, Any]  # a PolicyDocument (the service validates it)
    expected_version: int = Field(ge=0)


class CheckPolicy(Body):
    document: dict[str, Any] | str  # a PolicyDocument, as an object or YAML text


class Explain(Body):
    principal: str = Field(examples=["app:billing"], max_length=200)
    request: str | dict[str, Any] = Field(examples=["chat gpt-4o max_tokens=500"])
    groups: list[str] = Field(default=[], max_length=256)
    app_roles: list[str] = Field(default=[], max_length=256)


def validate_body(model: type[B], raw: dict[str, Any]) -> B:
    """``raw`` as ``model``; :class:`BadRequest` naming the first field that is wrong."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise BadRequest(f"'{where}': {error['msg']}", reason="invalid_body") from None


async def read_json_body(request: web.Request) -> dict[str, Any]:
    """The whole body (however many segments it arrives in), at most ``MAX_BODY`` bytes, as a
    JSON object."""
    if request.content_type != "application/json":
        raise BadRequest(
            "Send a JSON body with 'Content-Type: application/json'.", reason="content_type"
        )
    declared = request.content_length
    if declared is not None and declared > MAX_BODY:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise BadRequest("The body is not valid JSON.", reason="malformed_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", reason="malformed_json")
    if _deeper_than(body, MAX_DEPTH):
        raise BadRequest(
            f"The body is nested more than {MAX_DEPTH} levels deep.", reason="malformed_json"
        )
    return body


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays in ``value`` go more than ``limit`` levels deep (no
    recursion: the value may be 1,024 levels deep)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for item in node.values() if isinstance(node, dict) else node:
            if isinstance(item, dict | list):
                stack.append((item, depth + 1))
    return False


def _too_large() -> BadRequest:
    return BadRequest(f"The body is larger than {MAX_BODY} bytes.", reason="body_too_large")
