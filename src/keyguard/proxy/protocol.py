"""The proxy port's HTTP server: aiohttp's low-level server with the connection guard of
:mod:`.connections` and Azure-shaped parse errors.

Requests that fail before the handler runs (a malformed request line, a header line or header
block above the limits, an invalid method) are answered in Azure's JSON error shape. The parse
error itself is logged by type only: its text can quote the offending bytes, which may be a
credential.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ..errors import BadRequest, RequestError
from .aiohttp_server import web_response, whole_answer
from .connections import GuardedProtocol, GuardedServer
from .responses import error_response

__all__ = ["ProxyServer"]

log = logging.getLogger("keyguard.proxy")


class _Protocol(GuardedProtocol):
    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        log.warning(
            "refused an HTTP request that could not be parsed (from %s): %s",
            request.remote,
            type(exc).__name__ if exc is not None else status,
        )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        err: RequestError
        if status == 400:
            err = BadRequest(
                "The HTTP request is malformed: check the request line and headers (each "
                "header line at most 8 KiB, at most 128 headers).",
                reason="malformed_http",
            )
        else:
            err = RequestError("Keyguard hit an internal error.", code="InternalServerError")
            err.status = status
        response = web_response(error_response(err, "-", whole_answer))
        response.force_close()
        return response


class ProxyServer(GuardedServer):
    """A guarded ``web.Server`` whose connections answer parse errors in Azure's shape."""

    protocol = _Protocol
