"""The proxy port: one request, end to end.

1. classify the route (pure, :mod:`.routes`);
2. find and verify the credential (:mod:`.credentials`, :mod:`.authn`);
3. read and check the body (size limit, content type, JSON, the v1 ``model``);
4. resolve the deployment to a configured upstream and forward (:mod:`.relay`);
5. write one access-log line (no secrets: key id, app, route, status, timings).

Every error a client can cause is a :class:`RequestError` rendered in Azure's shape; anything
unexpected is logged with its traceback and answered with a generic 500 that reveals nothing.
The handler is a plain aiohttp low-level server callback: no router, no middleware stack.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_exceptions import HTTPRequestEntityTooLarge

from ..errors import (
    AuthenticationFailed,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    RequestError,
    UnsupportedMediaType,
)
from ..upstream.pool import UpstreamPool
from .authn import KeyAuthenticator, Principal
from .credentials import Credential, extract_credential
from .relay import Outcome, Relay
from .responses import error_response, json_response
from .routes import Route, check_deployment_name, parse_route

__all__ = ["ProxyHandler"]

log = logging.getLogger("keyguard.proxy")
access_log = logging.getLogger("keyguard.access")
security_log = logging.getLogger("keyguard.security")


class ProxyHandler:
    def __init__(
        self,
        *,
        pool: UpstreamPool,
        authenticator: KeyAuthenticator,
        relay: Relay,
        max_body_bytes: int,
        access_log_enabled: bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._authn = authenticator
        self._relay = relay
        self._max_body = max_body_bytes
        self._access = access_log_enabled
        self._now = now

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        request_id = secrets.token_hex(8)
        started = time.perf_counter()
        outcome = Outcome()
        principal: Principal | None = None
        route: Route | None = None
        deployment: str | None = None
        reason = "ok"
        try:
            raw_path, _, raw_query = request.raw_path.partition("?")
            route = parse_route(request.method, raw_path, raw_query)
            credential = extract_credential(
                request.headers.get("api-key"), request.headers.get("authorization")
            )
            principal = await self._authenticate(credential, request)
            if route.operation.name == "models":
                response: web.StreamResponse = json_response(self._models(), request_id)
            else:
                body, requested = await self._read_body(request, route)
                target = self._pool.resolve(requested)
                if target is None:
                    raise NotFound(
                        "The API deployment for this resource does not exist. Check the "
                        "deployment name; this gateway serves only its configured deployments.",
                        code="DeploymentNotFound",
                        reason="unknown_deployment",
                    )
                deployment = requested  # logged only once known: never echo arbitrary input
                response = await self._relay.forward(
                    request, route, target, body, request_id, outcome
                )
        except RequestError as exc:
            reason = exc.reason
            response = error_response(exc, request_id)
        except Exception:
            log.exception("unexpected error handling request %s", request_id)
            reason = "internal_error"
            response = error_response(
                RequestError("Keyguard hit an internal error.", code="InternalServerError"),
                request_id,
            )
            response.set_status(500)
        if self._access:
            self._log(
                request,
                request_id,
                started,
                response,
                route,
                deployment,
                principal,
                outcome,
                reason,
            )
        return response

    async def _authenticate(self, credential: Credential, request: web.BaseRequest) -> Principal:
        if credential.kind == "keyguard":
            assert credential.key is not None
            return await self._authn.authenticate(credential.key, self._now())
        if credential.kind == "azure_key":
            security_log.warning(
                "security_event kind=raw_azure_key_presented severity=high remote=%s",
                request.remote,
            )
            raise AuthenticationFailed(
                "Access denied: this is an Azure OpenAI key. Apps must not hold Azure keys; "
                "use a Keyguard key (kgk_...) and ask your operator to rotate the Azure key.",
                reason="azure_key_presented",
            )
        raise AuthenticationFailed(
            "Access denied: Entra ID tokens are not accepted by this gateway's configuration. "
            "Use a Keyguard key.",
            reason="jwt_not_enabled",
        )

    async def _read_body(self, request: web.BaseRequest, route: Route) -> tuple[bytes, str]:
        declared = request.content_length
        if declared is not None and declared > self._max_body:
            raise _too_large(self._max_body)
        try:
            body = await request.read()
        except HTTPRequestEntityTooLarge:
            raise _too_large(self._max_body) from None
        if len(body) > self._max_body:
            raise _too_large(self._max_body)
        ctype = request.content_type
        if route.operation.body == "multipart":
            if ctype != "multipart/form-data":
                raise UnsupportedMediaType(
                    "This operation takes a multipart/form-data body.", reason="content_type"
                )
            if route.deployment is None:  # pragma: no cover - no v1 multipart route is served
                raise BadRequest("A deployment is required.", reason="no_deployment")
            return body, route.deployment
        if ctype != "application/json":
            raise UnsupportedMediaType(
                "The request body must be JSON with 'Content-Type: application/json'.",
                reason="content_type",
            )
        try:
            payload: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest(
                "We could not parse the JSON body of your request. Send a valid JSON object.",
                reason="malformed_json",
            ) from None
        if not isinstance(payload, dict):
            raise BadRequest("The JSON body must be an object.", reason="malformed_json")
        if route.deployment is not None:
            return body, route.deployment
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest(
                "The body's 'model' must name the deployment to use.", reason="missing_model"
            )
        deployment = check_deployment_name(model)
        target = self._pool.resolve(deployment)
        if target is not None and target.deployment != deployment:
            payload["model"] = target.deployment
            body = orjson.dumps(payload)
        return body, deployment

    def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "keyguard"}
                for name in self._pool.deployments()
            ],
        }

    def _log(
        self,
        request: web.BaseRequest,
        request_id: str,
        started: float,
        response: web.StreamResponse,
        route: Route | None,
        deployment: str | None,
        principal: Principal | None,
        outcome: Outcome,
        reason: str,
    ) -> None:
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": request_id,
            "method": request.method,
            "family": route.family if route else None,
            "operation": route.operation.name if route else None,
            "deployment": deployment,
            "status": response.status,
            "reason": reason,
            "key_id": principal.key_id if principal else None,
            "app": principal.app if principal else None,
            "upstream_status": outcome.upstream_status or None,
            "stream": outcome.streamed,
            "client_disconnected": outcome.client_disconnected or None,
            "ms": round((time.perf_counter() - started) * 1000, 3),
            "remote": request.remote,
        }
        access_log.info(orjson.dumps(record).decode())


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than this gateway's limit of {limit} bytes.",
        reason="body_too_large",
    )
