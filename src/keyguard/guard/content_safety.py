"""Azure AI Content Safety over REST: Prompt Shields and harm analysis, bounded on every side.

:class:`ContentSafetyGuard` is a :class:`~keyguard.guard.findings.ModelGuard`. One ``check``
sends the request's texts to ``{endpoint}/contentsafety/text:shieldPrompt`` (the user's prompts
as ``userPrompt``, tool results and other documents as ``documents``) and, when harm thresholds
or blocklists are configured, to ``text:analyze``; the calls run at once, and the verdict is
the first flag in the order jailbreak, indirect attack, blocklist, harm (highest severity).

Bounds: Azure takes at most 10,000 characters per ``userPrompt``, per call's documents and per
``text``, so longer texts are split into as many calls as needed, up
to ``max_chars`` per request: beyond it the request is refused (400), never passed unchecked.
Pieces overlap by 200 characters, so a short attack phrase cut at a boundary is seen whole.
At most ``max_concurrency`` calls are in flight for the whole gateway; the whole check, waiting
for a slot included, must finish within ``timeout_ms``; an answer longer than
``max_response_bytes``, not JSON, not of the documented shape, or not a 200 is a failure.
Every failure is :class:`~keyguard.errors.GuardUnavailable` (the caller applies ``on_error``),
but a 400 (the service refuses this text) is ``BadRequest`` whatever ``on_error`` says: a text
crafted to be refused must not pass unchecked. Messages name the status and Azure's error
code, never a body, a header or the credential.

Why REST over the gateway's own aiohttp rather than ``azure-ai-contentsafety``: the SDK (1.0.0)
has no Prompt Shields call, so half the work would be REST anyway; its pipeline reads answers
without a size bound; and it would add a dependency for two POSTs. See
docs/guardrails-content-safety.md for the measured cost.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from itertools import zip_longest
from typing import Any

import aiohttp
import orjson

from ..errors import BadRequest, GuardUnavailable, shown
from .content_safety_settings import ContentSafetySettings
from .findings import ModelVerdict

__all__ = ["ContentSafetyGuard", "split", "pack", "MAX_CALL_CHARS", "new_session"]

log = logging.getLogger("keyguard.guard")

MAX_CALL_CHARS = 10_000  # Azure's limit per userPrompt, per call's documents, per text
OVERLAP = 200  # characters repeated between two pieces of a split text
_MAX_DOCUMENTS = 5  # documents per shieldPrompt call
_SNAKE = {"Hate": "hate", "SelfHarm": "self_harm", "Sexual": "sexual", "Violence": "violence"}

Headers = Callable[[], Mapping[str, str]]


def split(text: str, size: int = MAX_CALL_CHARS, overlap: int = OVERLAP) -> list[str]:
    """``text`` in pieces of at most ``size`` characters (code points), each repeating the
    last ``overlap`` characters of the one before, so a phrase shorter than ``overlap`` cut
    at a boundary is still whole in one piece (no overlap when ``size`` is too small)."""
    step = size - overlap if size > 2 * overlap else size
    pieces = []
    for start in range(0, len(text), step):
        pieces.append(text[start : start + size])
        if start + size >= len(text):
            break
    return pieces


def pack(
    texts: Sequence[str], size: int = MAX_CALL_CHARS, most: int | None = None
) -> list[list[str]]:
    """Texts grouped in calls of at most ``size`` characters together (and ``most`` texts),
    a text longer than ``size`` split first; the order is kept."""
    groups: list[list[str]] = []
    current: list[str] = []
    used = 0
    for text in texts:
        for piece in split(text, size):
            if current and (used + len(piece) > size or (most and len(current) >= most)):
                groups.append(current)
                current, used = [], 0
            current.append(piece)
            used += len(piece)
    if current:
        groups.append(current)
    return groups


def new_session(settings: ContentSafetySettings) -> aiohttp.ClientSession:
    """The client session for the service: its own pool (a slow service never takes the
    upstream's connections), TLS verified (``ca_file`` replaces the trust store)."""
    context: ssl.SSLContext | bool = True
    if settings.ca_file:
        context = ssl.create_default_context(cafile=settings.ca_file)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=settings.max_concurrency, ssl=context),
        # a backstop: the check's own deadline (timeout_ms, in check) comes first
        timeout=aiohttp.ClientTimeout(total=settings.timeout_ms / 1000 + 1),
        skip_auto_headers=("User-Agent",),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def _auth(headers: Mapping[str, str]) -> dict[str, str]:
    """The provider's headers as Content Safety takes them: a key goes in
    ``Ocp-Apim-Subscription-Key``, a token in ``Authorization``."""
    key = headers.get("api-key")
    if key:
        return {"Ocp-Apim-Subscription-Key": key}
    token = headers.get("Authorization")
    return {"Authorization": token} if token else {}


class ContentSafetyGuard:
    """Azure AI Content Safety as the guardrails' model-based check."""

    def __init__(
        self, settings: ContentSafetySettings, session: aiohttp.ClientSession, headers: Headers
    ) -> None:
        self._settings = settings
        self._session = session
        self._headers = headers
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._harm: dict[str, int] = {str(c): t for c, t in settings.harm.items()}
        base = f"{settings.endpoint}/contentsafety"
        self._shield_url = f"{base}/text:shieldPrompt?api-version={settings.api_version}"
        self._analyze_url = f"{base}/text:analyze?api-version={settings.api_version}"

    def __repr__(self) -> str:
        return f"ContentSafetyGuard({self._settings.endpoint})"

    async def check(
        self,
        prompts: Sequence[str],
        documents: Sequence[str],
        *,
        shields: bool = True,
        analyses: bool = True,
    ) -> ModelVerdict:
        """The verdict on a request's texts; ``shields``/``analyses`` narrow what is asked
        (a role with prompt attacks or harm off). Raises ``GuardUnavailable`` or, for more
        text than ``max_chars``, ``BadRequest``."""
        s = self._settings
        prompts = [p for p in prompts if p.strip()]
        documents = [d for d in documents if d.strip()]
        total = sum(map(len, prompts)) + sum(map(len, documents))
        if total > s.max_chars:
            raise BadRequest(
                f"The request carries {total} characters of text; this gateway's content safety "
                f"check takes at most {s.max_chars}. Shorten the prompt or the documents.",
                reason="content_safety_too_long",
            )
        calls: list[Any] = []
        user = s.prompt_shields.user and shields
        docs = s.prompt_shields.documents and shields
        prompt_pieces = split("\n\n".join(prompts)) if user else []
        doc_groups = pack(documents, most=_MAX_DOCUMENTS) if docs else []
        for piece, group in zip_longest(prompt_pieces, doc_groups):
            calls.append(self._shield(piece, group or []))
        if s.analyses and analyses:
            for group in pack([*prompts, *documents]):
                calls.append(self._analyze("\n\n".join(group)))
        if not calls:
            return ModelVerdict(False)
        try:
            async with asyncio.timeout(s.timeout_ms / 1000):
                verdicts = await _all(calls)
        except TimeoutError:
            raise GuardUnavailable(
                f"content safety did not answer within {s.timeout_ms} ms"
            ) from None
        return _verdict(verdicts)

    async def _shield(self, prompt: str | None, documents: list[str]) -> ModelVerdict:
        body: dict[str, Any] = {"documents": documents}
        if prompt is not None:
            body["userPrompt"] = prompt
        answer = await self._post(self._shield_url, body)
        user = answer.get("userPromptAnalysis")
        if prompt is not None and _attack(user):
            return ModelVerdict(True, "jailbreak")
        analysed = answer.get("documentsAnalysis", [])
        if not isinstance(analysed, list) or len(analysed) != len(documents):
            raise GuardUnavailable("content safety answered a malformed documentsAnalysis")
        if any(_attack(item) for item in analysed):
            return ModelVerdict(True, "indirect_attack")
        return ModelVerdict(False)

    async def _analyze(self, text: str) -> ModelVerdict:
        s = self._settings
        body: dict[str, Any] = {"text": text, "outputType": s.output_type}
        if s.harm:
            body["categories"] = list(s.harm)
        if s.blocklists:
            body["blocklistNames"] = list(s.blocklists)
            body["haltOnBlocklistHit"] = True
        answer = await self._post(self._analyze_url, body)
        matches = answer.get("blocklistsMatch") or []
        if not isinstance(matches, list):
            raise GuardUnavailable("content safety answered a malformed blocklistsMatch")
        for match in matches:
            name = match.get("blocklistName") if isinstance(match, dict) else None
            if isinstance(name, str) and name in s.blocklists:
                return ModelVerdict(True, f"blocklist:{name}")
        categories = answer.get("categoriesAnalysis")
        if not isinstance(categories, list):
            raise GuardUnavailable("content safety answered a malformed categoriesAnalysis")
        worst = ModelVerdict(False)
        for item in categories:
            category = item.get("category") if isinstance(item, dict) else None
            severity = item.get("severity", 0) if isinstance(item, dict) else None
            if (
                not isinstance(severity, int)
                or isinstance(severity, bool)
                or not 0 <= severity <= 7
            ):
                raise GuardUnavailable("content safety answered a malformed severity")
            if not isinstance(category, str) or category not in self._harm:
                continue
            if severity >= self._harm[category]:
                if not worst.flagged or severity > (worst.severity or 0):
                    worst = ModelVerdict(True, _SNAKE[category], severity)
        return worst

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = _auth(self._headers())
        if not headers:
            raise GuardUnavailable("content safety: no credential available yet")
        headers["Content-Type"] = "application/json"
        limit = self._settings.max_response_bytes
        async with self._slots:
            try:
                async with self._session.post(
                    url, data=orjson.dumps(body), headers=headers, allow_redirects=False
                ) as response:
                    declared = response.content_length
                    if declared is not None and declared > limit:
                        raise GuardUnavailable("content safety answered more than allowed")
                    raw = bytearray()
                    async for chunk in response.content.iter_chunked(16_384):
                        raw += chunk
                        if len(raw) > limit:
                            raise GuardUnavailable("content safety answered more than allowed")
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise GuardUnavailable(
                    f"content safety cannot be reached ({type(exc).__name__})"
                ) from None
        if status != 200:
            raise _failed(status, bytes(raw))
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise GuardUnavailable("content safety answered something that is not JSON") from None
        if not isinstance(answer, dict):
            raise GuardUnavailable("content safety answered something that is not an object")
        return answer


async def _all(calls: list[Any]) -> list[ModelVerdict]:
    """Run the calls at once; the first failure cancels the others and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except* GuardUnavailable as failed:
        raise failed.exceptions[0] from None
    except* BadRequest as refused:
        raise refused.exceptions[0] from None
    except* Exception as broken:  # a bug here must not become a 500: the declared choice
        log.error("content safety check failed", exc_info=broken.exceptions[0])
        raise GuardUnavailable("content safety check failed") from None
    return [t.result() for t in tasks]


def _attack(item: Any) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("attackDetected"), bool):
        raise GuardUnavailable("content safety answered a malformed attack analysis")
    return bool(item["attackDetected"])


def _failed(status: int, raw: bytes) -> GuardUnavailable | BadRequest:
    code = ""
    try:
        error = orjson.loads(raw).get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            code = " " + shown(error["code"])
    except (orjson.JSONDecodeError, AttributeError):
        pass
    if status == 400:
        # The service refuses this text: refused whatever on_error says, or a caller could
        # craft a text the service rejects and pass unchecked through a fail-open gateway.
        log.warning("content safety refused a request's text as invalid (400%s)", code)
        return BadRequest(
            "The content safety service could not analyse this request's text, so it was not "
            "served. Check the text for unusual content.",
            reason="content_safety_refused_text",
        )
    if status in (401, 403):
        log.error(
            "content safety refused Keyguard's credential (%d); check the identity's "
            "'Cognitive Services User' role or the key in the vault",
            status,
        )
    return GuardUnavailable(f"content safety answered {status}{code}")


_ORDER = ("jailbreak", "indirect_attack")


def _verdict(verdicts: list[ModelVerdict]) -> ModelVerdict:
    """The first flag in the order jailbreak, indirect attack, blocklist, harm (worst)."""
    flagged = [v for v in verdicts if v.flagged]
    if not flagged:
        return ModelVerdict(False)
    for category in _ORDER:
        for v in flagged:
            if v.category == category:
                return v
    for v in flagged:
        if v.category and v.category.startswith("blocklist:"):
            return v
    return max(flagged, key=lambda v: v.severity or 0)
