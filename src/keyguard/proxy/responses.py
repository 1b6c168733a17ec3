"""Responses the gateway writes itself, in Azure OpenAI's JSON error shape."""

from __future__ import annotations

import orjson

from ..core.transport import Answer, AnswerMaker
from ..errors import RequestError
from .headers import REQUEST_ID_HEADER, SERVER_HEADER

__all__ = ["error_response", "json_response", "error_body", "sse_error_event"]

_JSON = "application/json"


def error_body(exc: RequestError) -> bytes:
    if exc.extra:
        return orjson.dumps({"error": {"code": exc.code, "message": exc.message, **exc.extra}})
    return orjson.dumps({"error": {"code": exc.code, "message": exc.message}})


def error_response(exc: RequestError, request_id: str, answer: AnswerMaker) -> Answer:
    """``exc`` as an answer made by ``answer`` (the request's :meth:`Incoming.answer`)."""
    headers = {REQUEST_ID_HEADER: request_id, "apim-request-id": request_id, **SERVER_HEADER}
    headers.update(exc.headers)
    headers["Content-Type"] = _JSON
    return answer(exc.status, headers, error_body(exc))


def json_response(
    payload: object, request_id: str, answer: AnswerMaker, status: int = 200
) -> Answer:
    headers = {REQUEST_ID_HEADER: request_id, **SERVER_HEADER, "Content-Type": _JSON}
    return answer(status, headers, orjson.dumps(payload))


def sse_error_event(exc: RequestError) -> bytes:
    """An SSE event that makes SDK stream parsers raise a clean API error."""
    return b"data: " + error_body(exc) + b"\n\n"
