"""The proxy port: one request, end to end, through the stages of :mod:`.pipeline` (each
line that runs one is marked ``# stage: NAME``): classify the route, find and authenticate the
credential, read and check the body, resolve the deployment, authorise, admit (limits),
forward and relay, settle, record.

All that is known about the request travels in one
:class:`~keyguard.core.request.RequestContext`; the hooks are :mod:`keyguard.core.hooks`.

Every error a client can cause is a :class:`RequestError` rendered in Azure's shape; anything
unexpected is logged with its traceback and answered with a generic 500 that reveals nothing.
The handler is one callable from an :class:`~keyguard.core.transport.Incoming` request to an
answer (no router, no middleware stack); it knows no HTTP stack's types: the transport seam
(:mod:`keyguard.core.transport`) and its adapters stand between it and the server.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from ..core.hooks import (
    Admission,
    AllowAuthenticated,
    Authorizer,
    NoLimits,
    NoScreen,
    Recorder,
    Screen,
)
from ..core.logs import current_request_id
from ..core.netaddr import ClientAddress
from ..core.operations import Route
from ..core.request import RequestContext, client_fingerprint
from ..core.transport import Answer, Incoming, StreamedAnswer
from ..errors import (
    AuthenticationFailed,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    RequestError,
    UnsupportedMediaType,
)
from ..events import EventBus
from ..identity.authenticator import Authenticator
from ..identity.credentials import Credential, credential_digest, extract_credential
from ..upstream.pool import UpstreamPool
from .access_log import AccessLog
from .body import read_json_object
from .content_safety import PendingCheck, SafetyStage
from .guardrails import GuardStage
from .relay import Relay
from .responses import error_response, json_response
from .routes import check_deployment_name, parse_route

__all__ = ["ProxyHandler"]

log = logging.getLogger("keyguard.proxy")


class ProxyHandler:
    def __init__(
        self,
        *,
        pool: UpstreamPool,
        identity: Authenticator,
        relay: Relay,
        max_body_bytes: int,
        authorizer: Authorizer | None = None,
        screen: Screen | None = None,
        admission: Admission[Any] | None = None,
        recorder: Recorder | None = None,
        events: EventBus | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        keep_response_bodies: bool = False,
        client_address: Callable[[Incoming], str | None] | None = None,
        guard: GuardStage | None = None,
        safety: SafetyStage | None = None,
    ) -> None:
        self._guard = guard
        self._pool = pool
        self._relay = relay
        self._max_body = max_body_bytes
        self._authorizer = authorizer or AllowAuthenticated()
        self._screen = screen or NoScreen()
        self._admission = admission or NoLimits()
        self._recorder = recorder or AccessLog()
        self._events = events or EventBus()
        self._now = now
        self._keep_bodies = keep_response_bodies  # for the audit's opt-in content recording
        self._identity = identity
        self._client_address = client_address or ClientAddress()
        self._safety = safety

    async def __call__(self, request: Incoming) -> Answer | StreamedAnswer:
        ctx = RequestContext(
            request_id=secrets.token_hex(8),
            started=time.perf_counter(),
            method=request.method,
            remote=self._client_address(request),
            user_agent=request.headers.get("user-agent"),
            client=client_fingerprint(request.headers),
        )
        logged_as = current_request_id.set(ctx.request_id)  # every log line names the request
        response: Answer | StreamedAnswer
        try:
            try:
                response = await self._handle(request, ctx)
            except RequestError as exc:
                ctx.reason = exc.reason
                response = error_response(exc, ctx.request_id, request.answer)
                response.headers.update(ctx.response_headers)
            except Exception:
                log.exception("unexpected error handling request %s", ctx.request_id)
                ctx.reason = "internal_error"
                err = RequestError("Keyguard hit an internal error.", code="InternalServerError")
                err.status = 500
                response = error_response(err, ctx.request_id, request.answer)
            # The answer is made (a stream is relayed by now): the guardrails' hold-backs
            # refer back to the request; unhooked, the request is freed by reference counting
            # as soon as it is recorded, not left to the cycle collector with all it holds.
            ctx.answer_guard = ctx.hold = None
            ctx.status = response.status
            if self._keep_bodies and not response.streamed:
                ctx.response_body = response.body if isinstance(response.body, bytes) else None
            if getattr(self._recorder, "durable", False):  # audit durability: before_answer
                return await self._record_durably(request, ctx, response)
            # Recorded on the loop's next turn: the server writes the answer as soon as this
            # returns, so the access log and the monitor are off the request's latency.
            asyncio.get_running_loop().call_soon(self._recorder.record, ctx)  # stage: record
            return response
        finally:
            current_request_id.reset(logged_as)

    async def _record_durably(
        self, request: Incoming, ctx: RequestContext, response: Answer | StreamedAnswer
    ) -> Answer | StreamedAnswer:
        """The record is committed before the answer is released; when it cannot be, a
        non-streamed answer becomes the recorder's error (503) instead."""
        try:
            await self._recorder.record_durably(ctx)  # type: ignore[attr-defined]
        except RequestError as exc:
            if response.streamed and response.started:  # only the record is missing
                log.error("request %s: its audit record was not committed", ctx.request_id)
                return response
            return error_response(exc, ctx.request_id, request.answer)
        return response

    async def _handle(self, request: Incoming, ctx: RequestContext) -> Answer | StreamedAnswer:
        raw_path, _, raw_query = request.raw_path.partition("?")
        ctx.route = route = parse_route(request.method, raw_path, raw_query)  # stage: classify
        self._screen.screen(ctx)  # stage: screen
        headers = request.headers
        api_key, authorization = headers.get("api-key"), headers.get("authorization")
        try:
            credential: Credential | bytes | None = None
            if api_key is None and authorization is None and self._identity.accepts_certificates:
                credential = request.peer_certificate()  # mutual TLS: the client certificate
            if credential is None:
                credential = extract_credential(api_key, authorization)  # stage: credential
                if credential.key is not None:
                    ctx.presented_key_id = credential.key.key_id
            if isinstance(credential, bytes):  # a verified client certificate (DER)
                principal = self._identity.authenticate_certificate(credential, request)
            else:
                principal = await self._identity.authenticate(  # stage: authenticate
                    credential, request, remote=ctx.remote, now=self._now()
                )
        except AuthenticationFailed:
            # which credential failed (a keyed digest): one client retrying one bad key, or a
            # tool trying many, tell apart for the stuffing rule
            ctx.refused_credential = credential_digest(api_key or authorization or "")
            raise
        ctx.principal = principal
        if route.operation.name == "models":
            self._authorizer.authorize(ctx, self._now())
            return json_response(self._models(), ctx.request_id, request.answer)
        body, requested = await self._read_body(request, route, ctx)  # stage: read_body
        target = self._pool.resolve(requested)  # stage: resolve
        if target is None:
            raise NotFound(
                "The API deployment for this resource does not exist. Check the deployment "
                "name; this gateway serves only its configured deployments.",
                code="DeploymentNotFound",
                reason="unknown_deployment",
            )
        ctx.deployment = requested  # logged only once known: never echo arbitrary input
        self._authorizer.authorize(ctx, self._now())  # stage: authorize
        if self._guard is not None:
            await self._guard.check(ctx)  # stage: guard
        held = await self._admission.admit(ctx)  # stage: admit
        check: PendingCheck | None = None
        try:
            if self._safety is not None:
                check = self._safety.start(ctx)  # stage: safety
                if check is not None and self._safety.concurrent:
                    ctx.hold = check.settle  # the answer waits for the verdict
                elif check is not None:
                    await check.settle()
            body = _upstream_body(body, ctx, target.deployment)
            response = await self._relay.forward(request, ctx, target, body)  # stage: forward
            if check is not None:
                await check.settle()
            return response
        finally:
            if check is not None:
                check.cancel()
            await self._admission.settle(ctx, held)  # stage: settle

    async def _read_body(
        self, request: Incoming, route: Route, ctx: RequestContext
    ) -> tuple[bytes, str]:
        declared = request.content_length
        if declared is not None and declared > self._max_body:
            raise _too_large(self._max_body)
        body = await request.read_body(self._max_body)
        if body is None:
            raise _too_large(self._max_body)
        ctx.body_bytes = len(body)
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
        ctx.payload = payload = read_json_object(body)
        ctx.stream_requested = payload.get("stream") is True
        options = payload.get("stream_options")
        ctx.usage_requested = isinstance(options, dict) and options.get("include_usage") is True
        if route.deployment is not None:
            return body, route.deployment
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest(
                "The body's 'model' must name the deployment to use.", reason="missing_model"
            )
        return body, check_deployment_name(model)

    def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "keyguard"}
                for name in self._pool.deployments()
            ],
        }


def _upstream_body(body: bytes, ctx: RequestContext, upstream_deployment: str) -> bytes:
    """The body to send upstream: the client's bytes, unless something must change.

    Changes: a v1 ``model`` alias becomes the upstream deployment name, a streaming chat or
    completions request asks Azure for usage (``stream_options.include_usage``; the extra
    chunk is dropped on the way back), and hooks may have edited the payload
    (``ctx.payload_changed``).
    """
    payload = ctx.payload
    if payload is None:
        return body
    changed = ctx.payload_changed
    route = ctx.route
    if (
        route is not None
        and route.deployment is None
        and payload.get("model") != upstream_deployment
    ):
        payload["model"] = upstream_deployment
        changed = True
    if (
        ctx.stream_requested
        and not ctx.usage_requested
        and route is not None
        and route.operation.name in ("chat", "completions")
    ):
        options = payload.get("stream_options")
        payload["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
        changed = True
    return orjson.dumps(payload) if changed else body


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than this gateway's limit of {limit} bytes.",
        reason="body_too_large",
    )
