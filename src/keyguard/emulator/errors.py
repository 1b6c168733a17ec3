"""Azure's error bodies, word for word where they are known.

Everything the emulator refuses is raised as :class:`AzureError` (status, JSON body, extra
headers) and rendered by one middleware in :mod:`keyguard.emulator.app`. These are *Azure's*
errors, impersonated for clients, so they live outside Keyguard's own ``GatewayError`` tree.

Three families of shapes exist and all three are reproduced:

* Azure API Management / Cognitive Services: ``{"error": {"code": "...", "message": "..."}}``
* the model backend (OpenAI style): ``{"error": {"message", "type", "param", "code"}}``
* Azure Resource Manager: ``{"error": {"code": "AuthenticationFailed", "message": "..."}}``
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AzureError",
    "resource_not_found",
    "api_version_not_supported",
    "deployment_not_found",
    "operation_not_supported",
    "invalid_key",
    "invalid_token",
    "key_and_token",
    "local_auth_disabled",
    "invalid_request",
    "invalid_json",
    "unsupported_media_type",
    "payload_too_large",
    "rate_limited",
    "server_error",
    "service_unavailable",
    "arm_error",
]

QUOTA_URL = "https://aka.ms/oai/quotaincrease"
MODELS_URL = "https://go.microsoft.com/fwlink/?linkid=2197993"


class AzureError(Exception):
    """An HTTP error answer: ``status``, JSON ``body`` and extra ``headers``."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def _apim(status: int, code: str, message: str) -> AzureError:
    return AzureError(status, {"error": {"code": code, "message": message}})


def resource_not_found() -> AzureError:
    """Unknown route, or a legacy route without (or with an unknown) ``api-version``."""
    return _apim(404, "404", "Resource not found")


def api_version_not_supported() -> AzureError:
    return _apim(400, "BadRequest", "API version not supported")


def deployment_not_found() -> AzureError:
    return _apim(
        404,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment "
        "within the last 5 minutes, please wait a moment and try again.",
    )


def operation_not_supported(operation: str, model: str) -> AzureError:
    return _apim(
        400,
        "OperationNotSupported",
        f"The {operation} operation does not work with the specified model, {model}. Please "
        f"choose different model and try again. You can learn more about which models can be "
        f"used with each operation here: {MODELS_URL}.",
    )


def invalid_key() -> AzureError:
    return _apim(
        401,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
    )


def invalid_token() -> AzureError:
    return _apim(
        401,
        "401",
        "Unauthorized. Access token is missing, invalid, audience is incorrect "
        "(https://cognitiveservices.azure.com), or have expired.",
    )


def key_and_token() -> AzureError:
    return _apim(
        400, "BadRequest", "Either API-KEY or Authorization header must be provided but not both"
    )


def local_auth_disabled() -> AzureError:
    return _apim(
        403, "AuthenticationTypeDisabled", "Key based authentication is disabled for this resource."
    )


def invalid_request(message: str, param: str | None = None, status: int = 400) -> AzureError:
    """A body the model backend refuses (OpenAI-style shape, as Azure passes it through)."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return AzureError(status, {"error": error})


def invalid_json() -> AzureError:
    return invalid_request(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
        "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
        "contact us through our help center at help.openai.com.)"
    )


def unsupported_media_type(got: str, expected: str) -> AzureError:
    return invalid_request(
        f"Invalid Content-Type header ({got or 'none'}), expected {expected}.", status=415
    )


def payload_too_large(limit: int) -> AzureError:
    return _apim(
        413,
        "RequestEntityTooLarge",
        f"The request body is too large. The maximum accepted size is {limit} bytes.",
    )


def rate_limited(
    operation: str, api_version: str, kind: str, retry_after_ms: int, reset_header: str
) -> AzureError:
    """429 for ``kind`` ``"token"`` (TPM) or ``"call"`` (RPM), with Azure's retry headers."""
    seconds = max(1, -(-retry_after_ms // 1000))
    message = (
        f"Requests to the {operation} Operation under Azure OpenAI API version {api_version} "
        f"have exceeded {kind} rate limit of your current OpenAI S0 pricing tier. Please retry "
        f"after {seconds} seconds. Please go here: {QUOTA_URL} if you would like to further "
        f"increase the default rate limit."
    )
    headers = {
        "retry-after": str(seconds),
        "retry-after-ms": str(retry_after_ms),
        reset_header: str(seconds),
    }
    return AzureError(429, {"error": {"code": "429", "message": message}}, headers)


def server_error() -> AzureError:
    error = {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    return AzureError(500, {"error": error})


def service_unavailable() -> AzureError:
    return _apim(
        503,
        "ServiceUnavailable",
        "The service is temporarily unable to process your request. Please try again later.",
    )


def arm_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> AzureError:
    """An Azure Resource Manager error (management plane)."""
    return AzureError(status, {"error": {"code": code, "message": message}}, headers)
