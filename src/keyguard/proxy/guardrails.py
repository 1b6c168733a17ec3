"""The ``guard`` stage: the guardrails over what a request carries and what its answer says.

It runs once the body is read and the request authorised, before admission and forwarding:

1. the guardrails in force: those of every role that allows the request, the strictest action
   winning (:meth:`~keyguard.policy.compiled.Policy.guardrails`); without a policy, the
   defaults (block secrets, alert on personal data);
2. every text of the body (:func:`~keyguard.guard.extract.request_slots`, plus every other
   string of the body as an ``other`` text: :func:`unread_slots`) scanned by the engine, each
   match decided (:func:`~keyguard.guard.decide.judge`);
3. ``block``: a 400 in Azure's content-filter shape (:class:`~keyguard.errors.ContentFiltered`)
   naming the category, never the value; ``redact``: the forwarded body carries typed
   placeholders (``[EMAIL_1]``) instead; ``alert``: forwarded, a security event raised;
   ``log``: forwarded, the decision in the audit record only.

Fail closed: a body whose texts cannot be read, or an engine that fails on them, is refused
with a 400, never forwarded unread. Every decision goes to ``ctx.guardrails`` (category,
detector, action, where, a keyed fingerprint of the value), which the monitor writes into the
request's audit record, counts in the metrics and feeds to the detection rules.

The answer is judged by the same engine (:class:`AnswerCheck`, the relay's
``ctx.answer_guard``): a non-streamed answer before it is released (a value to block cuts the
choice: ``finish_reason: "content_filter"``, as Azure filters an output), a streamed one
through the hold-back window of :class:`~.guard_stream.StreamGuard`. Redactions apply to the
answer too, and with ``restore`` in every granting role the request's placeholders are put
back into the answer for the caller who sent the values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from ..core.request import RequestContext
from ..core.transport import MAX_ANSWER_BYTES
from ..errors import BadRequest, ContentFiltered, TooManyRequests, UpstreamError
from ..events import EventBus, SecurityEvent
from ..guard.decide import Hit, Placeholders, Verdict, judge
from ..guard.engine import GuardEngine
from ..guard.extract import request_slots, response_slots, with_replacements
from ..guard.findings import Slot
from ..guard.settings import GuardSettings
from ..policy.compiled import Policy
from ..policy.guardrails import DEFAULTS, Effective
from .big_reads import INLINE_CHARS, BigReads
from .guard_stream import StreamGuard

__all__ = ["AnswerCheck", "GuardStage", "guardrails_of"]

log = logging.getLogger("keyguard.guard")
ALERT_EVERY_S = 1.0  # guardrail_alert events per caller, category and side, at most

_FAMILY_WORDS = {
    "secret": "a secret",
    "personal": "personal data",
    "custom": "text a rule of this gateway refuses",
    "attack": "a prompt attack",
    "harm": "harmful content",
}


class GuardStage:
    def __init__(
        self,
        engine: GuardEngine,
        settings: GuardSettings,
        *,
        fingerprint: Callable[[str], str],
        events: EventBus,
        policy: Callable[[], Policy] | None = None,
        now: Callable[[], datetime],
        max_held_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._engine = engine
        self._max_held = max_held_bytes  # a stream's events held back, at most
        self._settings = settings
        self._fingerprint = fingerprint
        self._events = events
        self._policy = policy
        self._now = now
        self._alerted: dict[tuple[str, str, str], float] = {}  # last event per subject, kind
        self.big_reads = BigReads()

    async def judged(self, slots: list[Slot], *args: Any) -> Verdict:
        """:func:`judge` over an answer's ``slots``: on the loop for a usual answer; in a
        worker thread for one with more than ``INLINE_CHARS`` characters of text (a long read
        would hold every other request), a few at a time (:class:`~.big_reads.BigReads`)."""
        if sum(len(slot.text) for slot in slots) <= INLINE_CHARS:
            return judge(slots, self._engine.scan_slots, *args)
        async with self.big_reads.turn(None):
            return await asyncio.to_thread(judge, slots, self._engine.scan_slots, *args)

    def _read(
        self, operation: str, payload: dict[str, Any], actions: Effective, marks: Placeholders
    ) -> Verdict:
        """Every text of a request body found and judged."""
        slots = request_slots(operation, payload)
        slots.extend(unread_slots(payload, slots))
        return judge(slots, self._engine.scan_slots, actions, self._fingerprint, "request", marks)

    def actions(self, ctx: RequestContext) -> Effective:
        """The guardrails in force for ``ctx`` (authorised)."""
        return guardrails_of(ctx, self._policy)

    async def check(self, ctx: RequestContext) -> None:
        """Judge the request's texts: raise to block, rewrite ``ctx.payload`` to redact, raise
        events to alert; set ``ctx.answer_guard`` for the answer."""
        payload = ctx.payload
        route = ctx.route
        if payload is None or route is None:  # multipart (audio): no text to read
            return
        actions = self.actions(ctx)
        if not actions.active:
            return
        operation = route.operation.name
        caller = ctx.principal.id if ctx.principal is not None else ""
        placeholders = Placeholders()
        try:
            if ctx.body_bytes <= INLINE_CHARS:  # the usual body: found and read on the loop
                verdict = self._read(operation, payload, actions, placeholders)
            else:  # finding its texts alone may take long: all of it in a worker thread
                async with self.big_reads.turn(caller):
                    verdict = await asyncio.to_thread(
                        self._read, operation, payload, actions, placeholders
                    )
        except TooManyRequests:
            raise  # refused before reading: too many large requests at once
        except Exception as exc:  # fail closed: never forward what could not be read
            log.warning(
                "guardrails could not read request %s (%s); refused",
                ctx.request_id,
                type(exc).__name__,
            )
            raise BadRequest(
                "The gateway's guardrails could not read this request's body, so it was not "
                "forwarded. Send the texts as the API documents them (strings, or text parts).",
                code="GuardrailsUnreadable",
                reason="guard_unreadable",
            ) from None
        self._note(ctx, verdict)
        blocked = verdict.blocked or _unredactable(verdict)
        if blocked is not None:
            raise ContentFiltered(
                f"The request was refused by the gateway's guardrails: it carries "
                f"{_FAMILY_WORDS.get(blocked.family, 'refused content')} ({blocked.category}) "
                f"in a {blocked.role} text. Remove it and retry.",
                category=blocked.category,
                family=blocked.family,
                reason="guard_blocked",
            )
        if verdict.replacements:
            edited = with_replacements(payload, verdict.replacements)
            if not isinstance(edited, dict):  # pragma: no cover - extraction keeps the shape
                raise BadRequest("The body must be a JSON object.", reason="guard_unreadable")
            ctx.payload = edited
            ctx.payload_changed = True
        ctx.answer_guard = AnswerCheck(
            self,
            ctx,
            actions,
            placeholders,
            restore=placeholders.values if actions.restore and len(placeholders) else None,
        )

    def _note(self, ctx: RequestContext, verdict: Verdict | StreamGuard) -> None:
        """Keep the decisions on the request and raise an event for each alert."""
        for hit in verdict.hits:
            ctx.guardrails.append(hit.to_record())
        if verdict.more_hits:
            ctx.guardrails.append({"more": str(verdict.more_hits)})
        principal = ctx.principal
        subject = (principal.key_id or principal.id) if principal else (ctx.remote or "")
        now = None
        for hit in verdict.hits:
            if hit.action != "alert":
                continue
            now = now or self._now()
            gate = (subject, hit.category, hit.where)
            last = self._alerted.get(gate)
            at = now.timestamp()
            if last is not None and 0 <= at - last < ALERT_EVERY_S:
                continue  # one event a second per caller and category (each hit is audited)
            if len(self._alerted) >= 10_000:
                self._alerted.clear()
            self._alerted[gate] = at
            self._events.emit(
                SecurityEvent(
                    created=now,
                    kind="guardrail_alert",
                    severity="medium",
                    summary=(
                        f"The guardrails found {_FAMILY_WORDS.get(hit.family, 'content')} "
                        f"({hit.category}) in a {hit.where}; it was forwarded (action: alert)."
                    ),
                    key_id=principal.key_id if principal else None,
                    app=principal.app if principal else None,
                    source=ctx.remote,
                    evidence={
                        "category": hit.category,
                        "family": hit.family,
                        "detector": hit.detector,
                        "where": hit.where,
                        "fingerprint": hit.fingerprint,
                        "request_id": ctx.request_id,
                    },
                )
            )

    def stream_guard(
        self, actions: Effective, placeholders: Placeholders, restore: dict[str, str] | None
    ) -> StreamGuard:
        s = self._settings
        return StreamGuard(
            self._engine.scan,
            actions,
            self._fingerprint,
            placeholders=placeholders,
            restore=restore,
            window=s.stream_window_chars,
            context=s.stream_context_chars,
            max_held_bytes=self._max_held,
        )

    async def judge_answer(
        self,
        operation: str,
        body: dict[str, Any],
        actions: Effective,
        placeholders: Placeholders,
        restore: dict[str, str] | None,
    ) -> Verdict:
        slots = response_slots(operation, body)
        return await self.judged(slots, actions, self._fingerprint, "answer", placeholders, restore)


def guardrails_of(ctx: RequestContext, policy: Callable[[], Policy] | None) -> Effective:
    """The guardrails of every role that allows ``ctx``'s request (authorised), combined;
    the defaults without a policy."""
    if policy is None or ctx.policy is None:
        return DEFAULTS
    roles = ctx.policy.roles or ((ctx.policy.role,) if ctx.policy.role else ())
    return policy().guardrails(roles)


def _unredactable(verdict: Verdict) -> Hit | None:
    """A value to redact found in an object key (no API's): it cannot be rewritten, so the
    request is refused instead."""
    for path in verdict.replacements:
        if path and path[-1] == KEY_MARK:
            for hit in verdict.hits:
                if hit.role == "key" and hit.action == "redact":
                    return hit
    return None


_MEDIA = ("data:image/", "data:audio/")  # inline media: bytes, not text
_KEY_TEXT = 16  # object keys this long are read as texts too
KEY_MARK = "\x00key"  # the path of a key's own text (it cannot be rewritten: never redacted)
_READ = (str, dict, list)  # what holds text (numbers, booleans and null do not)


def unread_slots(payload: dict[str, Any], read: list[Slot]) -> list[Slot]:
    """Every other string of the request body, as ``other`` slots: whatever the extraction
    does not know (tool definitions, ``user``, ``metadata``, a text where the API expects an
    object, a field of a newer API version) still goes to Azure, so it is read too. Inline
    images and audio (``data:image/...``, ``data:audio/...``) are media, not text."""
    known = {slot.path for slot in read}
    out: list[Slot] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((k,), v) for k, v in payload.items()]
    while stack:
        path, node = stack.pop()
        kind = type(node)
        if kind is str:
            if path not in known and not node.startswith(_MEDIA):
                out.append(Slot(path, "other", node))
        elif kind is dict:
            for k, v in node.items():
                if len(k) >= _KEY_TEXT:  # a name no API uses: may carry a value; read it
                    out.append(Slot((*path, k, KEY_MARK), "key", k))
                if type(v) in _READ:
                    stack.append(((*path, k), v))
        elif kind is list:
            stack.extend(((*path, i), v) for i, v in enumerate(node) if type(v) in _READ)
    out.reverse()  # body order
    return out


class AnswerCheck:
    """The guardrails over one request's answer (:class:`~keyguard.core.request.AnswerGuard`)."""

    def __init__(
        self,
        stage: GuardStage,
        ctx: RequestContext,
        actions: Effective,
        placeholders: Placeholders,
        restore: dict[str, str] | None,
    ) -> None:
        self._stage = stage
        self._ctx = ctx
        self._actions = actions
        self._placeholders = placeholders
        self._restore = restore
        self._stream: StreamGuard | None = None

    @property
    def cut(self) -> bool:
        return self._stream is not None and self._stream.cut

    async def body(
        self, status: int, content_type: str, payload: bytes, parsed: Any = None
    ) -> bytes:
        """The answer to release: unchanged when nothing is found; edited to redact or
        restore; its choice cut (``finish_reason: "content_filter"``) to block. ``parsed``:
        ``payload``'s JSON when the relay has read it already (it may be edited here)."""
        ctx = self._ctx
        if status != 200 or content_type != "application/json" or ctx.route is None:
            return payload
        try:
            body = parsed if parsed is not None else orjson.loads(payload)
            if not isinstance(body, dict):
                raise ValueError("not an object")
            verdict = await self._stage.judge_answer(
                ctx.route.operation.name, body, self._actions, self._placeholders, self._restore
            )
        except Exception as exc:  # fail closed: an answer not read is not released
            log.warning(
                "guardrails could not read the answer to %s (%s); withheld",
                ctx.request_id,
                type(exc).__name__,
            )
            raise UpstreamError(
                "The gateway's guardrails could not read the upstream's answer, so it was "
                "withheld. Retry; the gateway's operators have been told.",
                reason="guard_unreadable_answer",
            ) from None
        self._stage._note(ctx, verdict)
        if verdict.blocked is None and not verdict.replacements:
            return payload
        texts = dict(verdict.replacements)
        if verdict.blocked is not None:
            _cut_answer(body, verdict.blocked, texts)
            ctx.reason = "guard_answer_blocked"
        return orjson.dumps(with_replacements(body, texts))

    def feed(self, events: bytes) -> bytes:
        stream = self._stream
        if stream is None:
            stream = self._stream = self._stage.stream_guard(
                self._actions, self._placeholders, self._restore
            )
        out = stream.feed(events)
        if stream.cut:
            self._end(stream)
        return out

    def flush(self, rest: bytes) -> bytes:
        stream = self._stream
        if stream is None:
            return rest
        out = stream.flush(rest)
        self._end(stream)
        return out

    def _end(self, stream: StreamGuard) -> None:
        self._stage._note(self._ctx, stream)
        stream.hits = []
        stream.more_hits = 0
        if stream.cut:
            self._ctx.reason = "guard_answer_blocked"


def _cut_answer(body: dict[str, Any], hit: Hit, texts: dict[Any, str]) -> None:
    """Cut every text of the answer, as Azure filters an output: each choice ends with
    ``finish_reason: "content_filter"`` and says which category; a Responses answer is
    ``incomplete`` for ``content_filter`` with no output."""
    for path in list(texts):
        texts[path] = ""
    results = {hit.category: {"filtered": True, "detected": True, "family": hit.family}}
    choices = body.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict):
                choice["finish_reason"] = "content_filter"
                choice["content_filter_results"] = results
                message = choice.get("message")
                if isinstance(message, dict):
                    message["content"] = ""
                    message.pop("tool_calls", None)
                    message.pop("function_call", None)
                elif "text" in choice:
                    choice["text"] = ""
        texts.clear()
    if body.get("object") == "response":
        body["status"] = "incomplete"
        body["incomplete_details"] = {"reason": "content_filter"}
        body["output"] = []
        body.pop("output_text", None)
        texts.clear()
