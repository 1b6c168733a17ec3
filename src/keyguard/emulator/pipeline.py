"""The path every data-plane request takes, in Azure's order.

1. the route and its ``api-version`` (404 ``Resource not found`` when unknown or missing);
2. authentication (401 / 403 / 400);
3. the body: content type (415), size (413), JSON or multipart parsing (400);
4. the deployment (404 ``DeploymentNotFound``) and whether its kind supports the operation
   (400 ``OperationNotSupported``).

The result is a :class:`Call` the operation handlers in :mod:`~keyguard.emulator.data_plane`
work from. Faults and rate limits are applied afterwards, once the request's cost is known
(:func:`admit`); :func:`finish` writes the answer and records the usage.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from keyguard.emulator import errors
from keyguard.emulator.appkeys import HEADERS_KEY, STATE_KEY
from keyguard.emulator.auth import Caller, authenticate_data_plane
from keyguard.emulator.config import DeploymentSpec
from keyguard.emulator.faults import Fault
from keyguard.emulator.state import EmulatorState
from keyguard.emulator.streaming import (
    Event,
    drop_connection,
    write_body,
    write_json,
    write_stream,
)

__all__ = [
    "Operation",
    "Call",
    "check_api_version",
    "authenticate",
    "read_json",
    "read_form",
    "resolve",
    "admit",
    "finish",
]

_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
RESPONSES_MIN_VERSION = "2025-03-01"


@dataclass(frozen=True, slots=True)
class Operation:
    """One data-plane operation: its path, Azure's operation id and the kinds serving it."""

    path: str
    name: str
    label: str
    kinds: frozenset[str]
    body: Literal["json", "multipart"] = "json"


@dataclass(slots=True)
class Call:
    """One authenticated, parsed, routed data-plane request."""

    request: web.Request
    state: EmulatorState
    operation: Operation
    api_version: str
    caller: Caller
    body: Mapping[str, Any]
    deployment: str = ""
    spec: DeploymentSpec | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.spec.model if self.spec is not None else self.deployment


def state_of(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


def check_api_version(request: web.Request, *, v1: bool, responses: bool = False) -> str:
    """The api-version label used in messages; raise Azure's error when not acceptable."""
    version = request.query.get("api-version")
    if v1:
        if version is None:
            return "v1"
        if version in ("preview", "latest", "v1"):
            return version
        raise errors.api_version_not_supported()
    if version is None or not _VERSION_RE.match(version):
        raise errors.resource_not_found()
    allowed = state_of(request).config.api_versions
    if allowed is not None and version not in allowed:
        raise errors.resource_not_found()
    if responses and version < RESPONSES_MIN_VERSION:
        raise errors.api_version_not_supported()
    return version


def authenticate(request: web.Request) -> Caller:
    state = state_of(request)
    headers = request.headers
    return authenticate_data_plane(
        api_key=headers.get("api-key", headers.get("Ocp-Apim-Subscription-Key")),
        authorization=headers.get("Authorization"),
        keys=state.keys(),
        signer=state.signer,
        now=state.clock(),
        local_auth_disabled=state.local_auth_disabled,
    )


def _check_size(request: web.Request) -> None:
    limit = state_of(request).config.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise errors.payload_too_large(limit)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object body, or Azure's 413/415/400."""
    _check_size(request)
    if request.content_type != "application/json":
        raise errors.unsupported_media_type(request.content_type, "application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise errors.payload_too_large(state_of(request).config.max_body_bytes) from exc
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.invalid_json() from exc
    if not isinstance(body, dict):
        raise errors.invalid_request("Invalid type for body: expected an object.")
    return body


async def read_form(request: web.Request) -> dict[str, Any]:
    """A multipart form: text fields as ``str``, the ``file`` part as ``bytes``."""
    _check_size(request)
    if request.content_type != "multipart/form-data":
        raise errors.unsupported_media_type(request.content_type, "multipart/form-data")
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge as exc:
        raise errors.payload_too_large(state_of(request).config.max_body_bytes) from exc
    except (ValueError, HttpProcessingError) as exc:
        raise errors.invalid_request("Could not parse multipart form") from exc
    body: dict[str, Any] = {}
    for name, value in form.items():
        if isinstance(value, web.FileField):
            body[name] = value.file.read()
            body[f"{name}.filename"] = value.filename
        elif isinstance(value, str):
            body[name] = value
    return body


def resolve(call: Call, deployment: str | None) -> None:
    """Attach the deployment named in the path or body; check its kind supports the call."""
    if deployment is None:
        model = call.body.get("model")
        if not isinstance(model, str) or not model:
            raise errors.invalid_request("Missing required parameter: 'model'.", "model")
        deployment = model
    spec = call.state.deployment(deployment)
    if spec is None:
        raise errors.deployment_not_found()
    call.deployment, call.spec = deployment, spec
    session = uuid.uuid5(uuid.NAMESPACE_DNS, f"{deployment}.{spec.model}").hex[:8]
    call.headers["azureml-model-session"] = f"d{session}-{spec.model}"[:40]
    if spec.kind not in call.operation.kinds:
        raise errors.operation_not_supported(call.operation.label, spec.model)


def _fault_error(fault: Fault) -> errors.AzureError:
    if fault.status == 429:
        error = errors.AzureError(
            429,
            {
                "error": {
                    "code": "429",
                    "message": fault.message
                    or "The system is currently experiencing high demand and cannot process "
                    "your request. Please try again later.",
                }
            },
            {
                "retry-after": str(fault.retry_after),
                "retry-after-ms": str(fault.retry_after * 1000),
            },
        )
        return error
    if fault.status == 500:
        error = errors.server_error()
    elif fault.status == 503:
        error = errors.service_unavailable()
        error.headers["retry-after"] = str(fault.retry_after)
    else:
        error = errors.AzureError(
            fault.status or 500,
            {"error": {"code": str(fault.status), "message": "Injected fault."}},
        )
    if fault.message:
        error.body["error"]["message"] = fault.message
    return error


async def admit(call: Call, cost: int) -> Fault | None:
    """Apply an injected fault and the rate limits; return a drop fault still to be applied."""
    state = call.state
    fault = state.take_fault(call.deployment)
    if fault is not None and fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault is not None and fault.status is not None:
        state.record_failure(call.deployment, call.caller.slot)
        error = _fault_error(fault)
        error.headers.update(call.headers)
        raise error
    decision = state.admit(call.deployment, cost)
    if not decision.allowed:
        state.record_failure(call.deployment, call.caller.slot)
        reset = (
            "x-ratelimit-reset-requests"
            if decision.exceeded == "call"
            else ("x-ratelimit-reset-tokens")
        )
        error = errors.rate_limited(
            call.operation.name,
            call.api_version,
            decision.exceeded or "token",
            decision.retry_after_ms,
            reset,
        )
        error.headers.update(call.headers)
        raise error
    call.headers["x-ratelimit-remaining-requests"] = str(decision.remaining_requests)
    call.headers["x-ratelimit-remaining-tokens"] = str(decision.remaining_tokens)
    call.request[HEADERS_KEY].update(call.headers)
    return fault if fault is not None and fault.drop is not None else None


async def finish(
    call: Call,
    prompt_tokens: int,
    completion_tokens: int,
    drop: Fault | None,
    *,
    body: dict[str, Any] | None = None,
    raw: tuple[bytes, str] | None = None,
    events: Iterable[Event] | None = None,
    done_marker: bool = False,
) -> web.StreamResponse:
    """Answer with ``body`` (JSON), ``raw`` (bytes, content type) or ``events`` (a stream),
    then record the usage."""
    state = call.state
    if drop is not None and drop.drop == "before_response":
        state.record_failure(call.deployment, call.caller.slot)
        drop_connection(call.request)
        return web.Response()
    if events is not None:
        response, delivered = await write_stream(
            call.request,
            events,
            done_marker=done_marker,
            delay=state.config.stream_delay,
            drop=drop,
        )
    elif raw is not None:
        response, delivered = await write_body(call.request, raw[0], raw[1], drop)
    else:
        response, delivered = await write_json(call.request, body or {}, drop)
    if delivered:
        state.record_success(call.deployment, call.caller.slot, prompt_tokens, completion_tokens)
    else:
        state.record_failure(call.deployment, call.caller.slot)
    return response
