"""Azure AI Content Safety's text endpoints, on the emulator's own origin.

* ``POST /contentsafety/text:shieldPrompt?api-version=…``  Prompt Shields: ``{"userPrompt",
  "documents": [...]}`` → ``{"userPromptAnalysis": {"attackDetected"}, "documentsAnalysis":
  [{"attackDetected"}, ...]}``;
* ``POST /contentsafety/text:analyze?api-version=…``  harm categories and blocklists:
  ``{"text", "categories"?, "blocklistNames"?, "haltOnBlocklistHit"?, "outputType"?}`` →
  ``{"blocklistsMatch": [...], "categoriesAnalysis": [{"category", "severity"}]}``.

Authentication is the data plane's (:func:`~keyguard.emulator.auth.authenticate_data_plane`):
``Ocp-Apim-Subscription-Key`` equal to key1 or key2, or an Entra token for
``https://cognitiveservices.azure.com`` from the emulator's identity endpoints. Limits as
Azure's: at most 10,000 characters of ``text``, of ``userPrompt`` and of all documents
together (Unicode code points); beyond them, 400 ``InvalidRequestBody``. The verdicts come from
:mod:`~keyguard.emulator.safety_detector`.

For tests, :class:`ContentSafetyState` (``emulator.state.content_safety``) records what each
call received, holds blocklists, and takes faults: ``{"latency_ms": 2000}``, ``{"status":
500}``, ``{"answer": "garbage"}`` (a 200 that is not JSON), ``{"answer": "huge"}`` (a 200 of
several megabytes), ``{"answer": "invalid"}`` (400 ``InvalidRequestBody``), with ``count`` /
``duration_s`` as for data-plane faults; :meth:`hold` returns an event every call waits on
before it answers. Over HTTP: ``POST /_emulator/content-safety/faults`` and ``GET
/_emulator/content-safety/received`` (control token).
"""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import Any

import orjson
from aiohttp import web

from keyguard.emulator import errors
from keyguard.emulator.appkeys import STATE_KEY
from keyguard.emulator.auth import authenticate_data_plane
from keyguard.emulator.control import fault_handler
from keyguard.emulator.faults import Fault
from keyguard.emulator.safety_detector import CATEGORIES, blocklist_matches, is_attack, severities

__all__ = ["MAX_CHARS", "routes"]

MAX_CHARS = 10_000
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
_HUGE = b'{"categoriesAnalysis": [' + b'{"category": "Hate", "severity": 0},' * 150_000 + b"{}]}"


def _invalid(message: str) -> errors.AzureError:
    body = {"error": {"code": "InvalidRequestBody", "message": message, "details": []}}
    return errors.AzureError(400, body, {"x-ms-error-code": "InvalidRequestBody"})


async def _call(request: web.Request, operation: str) -> tuple[dict[str, Any], str]:
    """Authenticate, check the api-version, apply a fault, parse the body."""
    state = request.app[STATE_KEY]
    headers = request.headers
    caller = authenticate_data_plane(
        api_key=headers.get("Ocp-Apim-Subscription-Key", headers.get("api-key")),
        authorization=headers.get("Authorization"),
        keys=state.keys(),
        signer=state.signer,
        now=state.clock(),
        local_auth_disabled=state.local_auth_disabled,
    )
    if not _API_VERSION.fullmatch(request.query.get("api-version", "")):
        raise errors.resource_not_found()
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    safety = state.content_safety
    safety.record(operation, body, caller.slot)
    await safety.wait_hold()
    fault, answer = safety.take_fault(state.clock())
    if fault is not None:
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.status is not None:
            code = {429: "TooManyRequests", 500: "InternalError", 503: "ServerBusy"}
            name = code.get(fault.status, str(fault.status))
            raise errors.AzureError(
                fault.status,
                {"error": {"code": name, "message": fault.message or "Injected fault."}},
                {"x-ms-error-code": name},
            )
        if answer == "invalid":
            raise _invalid("The request body is invalid.")
        if answer is not None:
            raise _Answer(answer)
    if not isinstance(body, dict):
        raise _invalid("The request body is not a valid JSON object.")
    return body, caller.slot


class _Answer(Exception):
    def __init__(self, kind: str) -> None:
        self.kind = kind


def _answer(kind: str) -> web.Response:
    if kind == "huge":
        return web.Response(body=_HUGE, content_type="application/json")
    return web.Response(body=b"<html>502 bad gateway", content_type="application/json")


async def shield_prompt(request: web.Request) -> web.StreamResponse:
    try:
        body, _ = await _call(request, "shieldPrompt")
    except _Answer as exc:
        return _answer(exc.kind)
    prompt = body.get("userPrompt")
    documents = body.get("documents", [])
    if prompt is not None and not isinstance(prompt, str):
        raise _invalid("userPrompt must be a string.")
    if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
        raise _invalid("documents must be an array of strings.")
    if prompt is None and not documents:
        raise _invalid("At least one of userPrompt and documents is required.")
    if prompt is not None and len(prompt) > MAX_CHARS:
        raise _invalid(f"The userPrompt is longer than {MAX_CHARS} characters.")
    if sum(len(d) for d in documents) > MAX_CHARS:
        raise _invalid(f"The documents are longer than {MAX_CHARS} characters in total.")
    result: dict[str, Any] = {}
    if prompt is not None:
        result["userPromptAnalysis"] = {"attackDetected": is_attack(prompt)}
    result["documentsAnalysis"] = [{"attackDetected": is_attack(d)} for d in documents]
    return web.Response(body=orjson.dumps(result), content_type="application/json")


async def analyze(request: web.Request) -> web.StreamResponse:
    try:
        body, _ = await _call(request, "analyze")
    except _Answer as exc:
        return _answer(exc.kind)
    state = request.app[STATE_KEY].content_safety
    text = body.get("text")
    if not isinstance(text, str):
        raise _invalid("text is required and must be a string.")
    if len(text) > MAX_CHARS:
        raise _invalid(f"The text is longer than {MAX_CHARS} characters.")
    categories = body.get("categories") or list(CATEGORIES)
    if not isinstance(categories, list) or any(c not in CATEGORIES for c in categories):
        raise _invalid(f"categories must be some of {', '.join(CATEGORIES)}.")
    output = body.get("outputType", "FourSeverityLevels")
    if output not in ("FourSeverityLevels", "EightSeverityLevels"):
        raise _invalid("outputType must be FourSeverityLevels or EightSeverityLevels.")
    names = body.get("blocklistNames") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _invalid("blocklistNames must be an array of strings.")
    for name in names:
        if name not in state.blocklists:
            raise errors.AzureError(
                404,
                {"error": {"code": "ResourceNotFound", "message": f"Blocklist {name} not found."}},
                {"x-ms-error-code": "ResourceNotFound"},
            )
    hits = blocklist_matches(text, names, state.blocklists)
    found: dict[str, int] = {}
    if not (hits and body.get("haltOnBlocklistHit") is True):
        found = severities(text, categories, eight_levels=output == "EightSeverityLevels")
    result = {
        "blocklistsMatch": [
            {
                "blocklistName": hit.blocklist,
                "blocklistItemId": hit.item_id,
                "blocklistItemText": hit.text,
            }
            for hit in hits
        ],
        "categoriesAnalysis": [{"category": c, "severity": s} for c, s in found.items()],
    }
    return web.Response(body=orjson.dumps(result), content_type="application/json")


def _authorized(request: web.Request) -> bool:
    config = request.app[STATE_KEY].config
    presented = request.headers.get("x-emulator-token", "").encode()
    return hmac.compare_digest(presented, config.control_token.encode())


async def control_received(request: web.Request) -> web.Response:
    if not _authorized(request):
        return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
    received = request.app[STATE_KEY].content_safety.received
    calls = [{"operation": r.operation, "body": r.body, "caller": r.caller} for r in received]
    return web.json_response({"received": calls})


def _add_fault(request: web.Request, raw: dict[str, Any]) -> Fault:
    state = request.app[STATE_KEY]
    return state.content_safety.add_fault(raw, state.clock())


def routes() -> list[web.RouteDef]:
    return [
        web.post("/contentsafety/text:shieldPrompt", shield_prompt),
        web.post("/contentsafety/text:analyze", analyze),
        web.post("/_emulator/content-safety/faults", fault_handler(_add_fault)),
        web.get("/_emulator/content-safety/received", control_received),
    ]
