"""Keyguard's one error tree.

Every error Keyguard raises on purpose derives from :class:`GatewayError`. Errors that reach a
client carry the HTTP status and the Azure error ``code`` they are rendered with, so one handler
(``keyguard.proxy.responses.error_response``) turns any of them into Azure's JSON error shape::

    GatewayError
    ├── ConfigurationError          bad or unsafe configuration (startup, CLI)
    ├── StorageError                the store failed (driver errors are wrapped)
    ├── VaultError                  a secret could not be stored, found or decrypted
    ├── GuardUnavailable            a model-based guardrail could not answer in time
    ├── UpstreamFailed              the upstream HTTP client failed (core/transport.py)
    │   ├── UpstreamTimedOut        connecting or reading took too long
    │   ├── UpstreamNotReached      no connection: the request did not get through
    │   └── UpstreamTooLarge        an answer, or one event of a stream, above the cap
    └── RequestError                something a client gets back as an HTTP error
        ├── BadRequest              400  malformed body, bad api-version, wrong content type
        │   └── ContentFiltered     400  a guardrail refused what the request carries
        ├── AuthenticationFailed    401  no, malformed, unknown, revoked or expired credential
        ├── PermissionDenied        403  credential valid, request not allowed
        ├── NotFound                404  unknown route or deployment
        ├── RequestTimeout          408  the body did not arrive in time (also a TimeoutError)
        ├── PayloadTooLarge         413  body above the configured limit
        ├── UnsupportedMediaType    415  body of the wrong content type
        ├── TooManyRequests         429  a limit would be exceeded
        ├── ServiceUnavailable      503  a bounded table is full of live entries
        └── UpstreamError           502/504  Azure could not be reached or misbehaved

Messages never contain a secret: callers pass redacted values only, and a value a caller sent
is quoted only through :func:`shown`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "GatewayError",
    "ConfigurationError",
    "StorageError",
    "VaultError",
    "GuardUnavailable",
    "UpstreamFailed",
    "UpstreamTimedOut",
    "UpstreamNotReached",
    "UpstreamTooLarge",
    "RequestError",
    "BadRequest",
    "ContentFiltered",
    "AuthenticationFailed",
    "PermissionDenied",
    "NotFound",
    "RequestTimeout",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "TooManyRequests",
    "ServiceUnavailable",
    "UpstreamError",
    "shown",
]

_PLAIN = re.compile(r"[A-Za-z0-9._:@/+-]{1,64}")
_LONG_RUN = re.compile(r"[A-Za-z0-9]{24}")


def shown(value: str, limit: int = 40) -> str:
    """A caller's value fit to quote in an error or a record: short plain text that does not
    look like credential material (no run of 24 letters and digits, as keys, tokens and hex
    secrets have), quoted; anything else is not repeated."""
    if (
        len(value) <= limit
        and _PLAIN.fullmatch(value) is not None
        and _LONG_RUN.search(value) is None
        and not value.startswith(("kgk_", "kga_", "sk-", "eyJ"))
    ):
        return repr(value)
    return "(the value is not repeated)"


class GatewayError(Exception):
    """Root of every error Keyguard raises on purpose."""


class ConfigurationError(GatewayError):
    """The configuration is missing, malformed or unsafe; the message names the setting."""


class StorageError(GatewayError):
    """The store could not complete an operation."""


class VaultError(GatewayError):
    """A vault secret could not be stored, found or decrypted."""


class GuardUnavailable(GatewayError):
    """A model-based guardrail (Azure AI Content Safety) did not answer in time or failed; the
    guardrail's declared fail-open or fail-closed choice decides what happens to the request."""


class UpstreamFailed(GatewayError):
    """The client toward the upstream failed: what an HTTP stack's own errors become in its
    adapter (:mod:`keyguard.core.transport`), so the relay tells them apart without knowing
    the stack. ``cause`` names the stack's error (for the log; never its text)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class UpstreamTimedOut(UpstreamFailed):
    """Connecting to the upstream, or reading its answer, took longer than allowed."""


class UpstreamNotReached(UpstreamFailed):
    """No connection to the upstream (refused, unresolvable, closed before answering): the
    request certainly did not get through, so another backend may be tried."""


class UpstreamTooLarge(UpstreamFailed):
    """The upstream's answer (read whole), or one event of its stream, is larger than
    ``proxy.max_answer_bytes``: the gateway does not hold it in memory."""


class RequestError(GatewayError):
    """An error returned to a client, in Azure's shape: ``{"error": {"code", "message"}}``."""

    status: int = 400
    code: str = "BadRequest"
    #: more members of the ``error`` object (Azure's ``param``, ``innererror`` ...)
    extra: Mapping[str, Any] | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # A short machine-readable reason for logs, metrics and audit (never a secret).
        self.reason = reason or self.code
        self.headers = headers or {}


class BadRequest(RequestError):
    status = 400
    code = "BadRequest"


class ContentFiltered(BadRequest):
    """A guardrail refused what the request carries, in Azure OpenAI's own content-filter shape,
    so SDKs raise what they raise against Azure (``BadRequestError``, ``code ==
    "content_filter"``): ``param: "prompt"`` and ``innererror: {"code":
    "ResponsibleAIPolicyViolation", "content_filter_result": {category: {"filtered": true,
    ...}}}``. ``result`` is that mapping (the model-based layer's), or it is built from one
    ``category`` and its ``family`` (the local detectors'). Never carries the value found."""

    code = "content_filter"

    def __init__(
        self,
        message: str,
        result: Mapping[str, Any] | None = None,
        *,
        reason: str,
        category: str | None = None,
        family: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.category = category
        self.family = family
        if result is None:
            result = {str(category): {"filtered": True, "detected": True, "family": family}}
        self.extra = {
            "param": "prompt",
            "type": None,
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": dict(result),
            },
        }


class AuthenticationFailed(RequestError):
    status = 401
    code = "401"


class PermissionDenied(RequestError):
    status = 403
    code = "PermissionDenied"


class NotFound(RequestError):
    status = 404
    code = "404"


class RequestTimeout(RequestError, TimeoutError):
    """The client did not send its request body in time. Also a :class:`TimeoutError`, so
    the HTTP server, which waits a while for an unread body after answering, gives up on
    it at once instead of logging it as an unexpected error."""

    status = 408
    code = "RequestTimeout"


class PayloadTooLarge(RequestError):
    status = 413
    code = "RequestEntityTooLarge"


class UnsupportedMediaType(RequestError):
    status = 415
    code = "UnsupportedMediaType"


class TooManyRequests(RequestError):
    status = 429
    code = "429"


class ServiceUnavailable(RequestError):
    status = 503
    code = "ServiceUnavailable"


class UpstreamError(RequestError):
    status = 502
    code = "BadGateway"

    def __init__(self, message: str, *, status: int = 502, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.status = status
        if status == 504 and "code" not in kwargs:
            self.code = "GatewayTimeout"
