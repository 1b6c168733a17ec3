"""Wiring: the aiohttp application, its routes, error rendering and Azure's common headers.

One middleware turns every :class:`~keyguard.emulator.errors.AzureError` into its JSON answer,
unknown routes and methods into Azure's ``404 Resource not found``, oversized bodies into 413
and anything unexpected into Azure's 500 body (logged, never a traceback to the client). An
``on_response_prepare`` hook adds the headers Azure puts on every data-plane answer, streamed
or not: ``apim-request-id``, ``x-request-id``, ``x-ms-region``, ``x-ms-client-request-id``
(echoed), ``x-content-type-options`` and the per-request rate-limit headers.
"""

from __future__ import annotations

import logging
import uuid

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from keyguard.emulator import (
    content_safety,
    control,
    data_plane,
    errors,
    identity,
    keyvault,
    logs_ingestion,
    management,
    signin,
)
from keyguard.emulator.appkeys import DATA_PLANE_KEY, HEADERS_KEY, STATE_KEY
from keyguard.emulator.state import EmulatorState

__all__ = ["build_app"]

logger = logging.getLogger("keyguard.emulator")


def _render(error: errors.AzureError) -> web.Response:
    response = web.Response(
        status=error.status, body=orjson.dumps(error.body), content_type="application/json"
    )
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


@web.middleware
async def azure_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[DATA_PLANE_KEY] = request.path.startswith("/openai/")
    request[HEADERS_KEY] = {}
    try:
        return await handler(request)
    except errors.AzureError as exc:
        return _render(exc)
    except web.HTTPRequestEntityTooLarge:
        return _render(errors.payload_too_large(request.app[STATE_KEY].config.max_body_bytes))
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return _render(errors.resource_not_found())
    except web.HTTPException as exc:
        return _render(
            errors.AzureError(
                exc.status, {"error": {"code": str(exc.status), "message": exc.reason}}
            )
        )
    except Exception:
        logger.exception("emulator: unexpected error on %s %s", request.method, request.path)
        return _render(errors.server_error())


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    if not request.get(DATA_PLANE_KEY):
        return
    headers = response.headers
    headers["apim-request-id"] = str(uuid.uuid4())
    headers["x-request-id"] = str(uuid.uuid4())
    headers["x-ms-region"] = request.app[STATE_KEY].config.region
    headers["x-content-type-options"] = "nosniff"
    headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains; preload"
    client_request_id = request.headers.get("x-ms-client-request-id")
    if client_request_id is not None:
        headers["x-ms-client-request-id"] = client_request_id
    for name, value in request.get(HEADERS_KEY, {}).items():
        headers.setdefault(name, value)


def build_app(state: EmulatorState) -> web.Application:
    """The whole emulator as one aiohttp application."""
    app = web.Application(middlewares=[azure_errors], client_max_size=state.config.max_body_bytes)
    app[STATE_KEY] = state
    app.on_response_prepare.append(_common_headers)
    router = app.router
    router.add_post("/openai/deployments/{deployment}/{operation:.+}", data_plane.legacy_handler)
    router.add_post("/openai/responses", data_plane.responses_handler)
    router.add_get("/openai/v1/models", data_plane.models_handler)
    router.add_post("/openai/v1/{operation:.+}", data_plane.v1_handler)
    router.add_get("/metadata/identity/oauth2/token", identity.imds_token)
    router.add_get("/msi/token", identity.app_service_token)
    router.add_routes(management.routes())
    keyvault.register(app)  # Key Vault secrets (/secrets/...)
    logs_ingestion.register(app)  # Azure Monitor Logs Ingestion (/dataCollectionRules/...)
    router.add_routes(control.routes())
    router.add_routes(content_safety.routes())  # Azure AI Content Safety (text)
    for path in ("/{tenant}/discovery/keys", "/{tenant}/discovery/v2.0/keys"):
        router.add_get(path, identity.jwks)
    for path in (
        "/{tenant}/.well-known/openid-configuration",
        "/{tenant}/v2.0/.well-known/openid-configuration",
    ):
        router.add_get(path, identity.openid_configuration)
    router.add_get("/{tenant}/oauth2/v2.0/authorize", signin.authorize)
    router.add_post("/{tenant}/oauth2/v2.0/token", signin.token)
    return app
