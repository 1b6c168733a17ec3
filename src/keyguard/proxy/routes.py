"""Which Azure OpenAI operation a request is: a pure function of method, raw path and query.

Two URL families are served:

* legacy: ``/openai/deployments/{deployment}/{operation}?api-version=YYYY-MM-DD[-preview]``
  (and ``/openai/responses?api-version=...`` with the deployment in the body's ``model``);
* v1: ``/openai/v1/{operation}`` with the deployment in the body's ``model``.

The path is matched in its raw, percent-encoded form: an encoded character in a deployment
name (``%2f``, ``%2e``) is refused rather than decoded, so what is authorised is exactly what
is forwarded. Anything else is a :class:`NotFound`.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from ..core.operations import (
    DEPLOYMENT_NAME,
    LEGACY_OPERATIONS,
    OPERATIONS,
    V1_OPERATIONS,
    Route,
)
from ..errors import AuthenticationFailed, BadRequest, NotFound, shown

__all__ = ["parse_route", "check_deployment_name"]

_API_VERSION = re.compile(r"20\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(-preview)?")
_V1_API_VERSIONS = frozenset({"preview", "latest", "v1"})
# Query parameters that carry credentials: refused, never forwarded, never logged.
_CREDENTIAL_PARAMS = frozenset(
    {"api-key", "api_key", "apikey", "key", "subscription-key", "access_token", "token", "code"}
)
_seen_versions: set[str] = set()  # valid versions seen, to skip the regex (bounded)
_LEGACY_PREFIX = "/openai/deployments/"
_V1_PREFIX = "/openai/v1/"


def check_deployment_name(name: str) -> str:
    """Validate a deployment name taken from a path or a body; raise :class:`NotFound`."""
    if not DEPLOYMENT_NAME.fullmatch(name) or ".." in name:
        raise NotFound(
            "The deployment name is not valid. Use the name of a deployment this gateway serves "
            "(letters, digits, '-', '_' and '.').",
            code="DeploymentNotFound",
            reason="invalid_deployment_name",
        )
    return name


def _query(raw_query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        lname = name.lower()
        if lname in _CREDENTIAL_PARAMS:
            raise AuthenticationFailed(
                "Credentials in the query string are refused: they end up in logs and browser "
                "history. Send your Keyguard key in the 'api-key' header instead.",
                reason="credential_in_query",
            )
        if lname in params:
            raise BadRequest(
                f"The query parameter {shown(name)} is given twice.", reason="dup_query"
            )
        params[lname] = value
    return params


def _not_found() -> NotFound:
    return NotFound("Resource not found", reason="unknown_route")


def _params(raw_query: str) -> dict[str, str]:
    # Fast path for what SDKs send: exactly one plain ``api-version=...`` parameter.
    if raw_query.startswith("api-version=") and not any(c in raw_query for c in "&%+;"):
        return {"api-version": raw_query[12:]}
    return _query(raw_query) if raw_query else {}


def parse_route(method: str, raw_path: str, raw_query: str) -> Route:
    """Classify a request; raise a :class:`RequestError` for anything not served."""
    params = _params(raw_query)
    if raw_path.startswith(_V1_PREFIX):
        op = V1_OPERATIONS.get(raw_path[len(_V1_PREFIX) :].rstrip("/"))
        if op is None:
            raise _not_found()
        version = params.get("api-version")
        if version is not None and version not in _V1_API_VERSIONS:
            raise BadRequest(
                f"api-version {shown(version)} is not supported on /openai/v1/ routes; "
                "omit it or use 'preview'.",
                reason="bad_api_version",
            )
        route = Route("v1", op, None, version)
    elif raw_path.startswith(_LEGACY_PREFIX):
        deployment, sep, op_path = raw_path[len(_LEGACY_PREFIX) :].partition("/")
        op = LEGACY_OPERATIONS.get(op_path.rstrip("/")) if sep else None
        if op is None:
            raise _not_found()
        route = Route("legacy", op, check_deployment_name(deployment), _api_version(params))
    elif raw_path.rstrip("/") == "/openai/responses":
        route = Route("legacy", OPERATIONS["responses"], None, _api_version(params))
    else:
        raise _not_found()
    if method != route.operation.method:
        raise NotFound(
            f"{method} is not supported on this route; use {route.operation.method}.",
            reason="method_not_allowed",
        )
    return route


def _api_version(params: dict[str, str]) -> str:
    version = params.get("api-version")
    if not version:
        raise BadRequest(
            "Missing the api-version query parameter, e.g. ?api-version=2024-10-21.",
            reason="missing_api_version",
        )
    if version in _seen_versions:
        return version
    if not _API_VERSION.fullmatch(version):
        raise BadRequest(
            f"api-version {shown(version)} is not a valid version; use a date such as "
            "2024-10-21 or 2025-04-01-preview.",
            reason="bad_api_version",
        )
    if len(_seen_versions) < 256:
        _seen_versions.add(version)
    return version
