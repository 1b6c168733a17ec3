"""Forward one request to Azure OpenAI and relay the answer, streaming without buffering.

The upstream URL is built from the configured endpoint and the validated upstream deployment;
redirects are never followed; the client's credential never leaves the gateway (the headers
toward Azure come from :func:`keyguard.proxy.headers.request_headers`). Server-sent events are
written to the client chunk by chunk as they arrive.

Each caller (a key or an Entra identity) and each app may hold only its share of the upstream
connection pool (:mod:`.fairshare`); a request beyond it is a 429 before it takes a connection.

A deployment with several backends fails over: when a backend answers 429 (it is then taken
out for its ``retry-after``) or cannot be reached, the same request goes to the next backend in
the pool's order. That happens only before the client has received anything; once the answer
has started, nothing is retried.

Failures end cleanly: Azure unreachable is a 502, too slow a 504, an upstream that breaks in
the middle of a stream gets an SSE error event (the SDK raises a clean ``APIError``) and the
stream is closed; a client that goes away in the middle of a stream closes the upstream
request. Azure rejecting Keyguard's own credential is a 502 for the client (its Keyguard key
was fine) and an error in the log for the operator.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import MutableMapping
from typing import Any

import orjson

from ..core.operations import Route
from ..core.request import RequestContext, Usage
from ..core.transport import (
    MAX_ANSWER_BYTES,
    Answer,
    ClientGone,
    Incoming,
    StreamedAnswer,
    UpstreamAnswer,
    UpstreamClient,
)
from ..errors import (
    TooManyRequests,
    UpstreamError,
    UpstreamFailed,
    UpstreamNotReached,
    UpstreamTimedOut,
    UpstreamTooLarge,
)
from ..upstream.breaker import parse_retry_after
from ..upstream.pool import Target, UpstreamPool
from .fairshare import FairShare
from .headers import request_headers, response_headers
from .responses import sse_error_event
from .sse import SseTap, StreamedText

__all__ = ["Relay", "upstream_url"]

log = logging.getLogger("keyguard.proxy")


def upstream_url(target: Target, route: Route) -> str:
    base = target.upstream.endpoint
    if route.family == "v1":
        url = f"{base}/openai/v1/{route.operation.path}"
        return url if route.api_version is None else f"{url}?api-version={route.api_version}"
    if route.deployment is None:  # legacy, deployment in the body (responses)
        return f"{base}/openai/{route.operation.path}?api-version={route.api_version}"
    return (
        f"{base}/openai/deployments/{target.deployment}/{route.operation.path}"
        f"?api-version={route.api_version}"
    )


class Relay:
    def __init__(
        self,
        client: UpstreamClient,
        pool: UpstreamPool | None = None,
        share: FairShare | None = None,
        *,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._client = client
        self._pool = pool
        self._share = share
        self._max_answer = max_answer_bytes

    async def forward(
        self, request: Incoming, ctx: RequestContext, target: Target, body: bytes
    ) -> Answer | StreamedAnswer:
        """Send to ``target`` within the caller's fair share of the upstream pool (429 beyond
        it); on a 429 or a failed connection fail over to the deployment's next backend, while
        nothing has been sent to the client yet."""
        share = self._share
        taken = share.take(ctx.principal) if share is not None else None
        try:
            assert ctx.route is not None
            plan = self._plan(ctx, target)
            pool = self._pool
            if pool is not None and (ctx.deployment is None or pool.backends(ctx.deployment) < 2):
                pool = None  # a single backend: its 429s go to the client as they are
            for attempt, backend in enumerate(plan):
                last = attempt == len(plan) - 1
                sent = time.perf_counter()
                upstream = await self._send(
                    request, ctx, backend, _body_for(body, ctx, target, backend), last, pool
                )
                if upstream is None:
                    continue  # could not connect: the next backend
                if upstream.status == 429 and pool is not None:
                    held = pool.failed(backend, parse_retry_after(upstream.headers, time.time()))
                    if not last:
                        log.warning(
                            "upstream %s answered 429 for %s; out for %.1fs, failing over",
                            backend.upstream.name,
                            backend.deployment,
                            held,
                        )
                        upstream.release()
                        continue
                elif pool is not None:
                    pool.succeeded(backend)
                return await self._relay(request, ctx, backend, upstream, sent)
            raise AssertionError("unreachable: the last backend always answers or raises")
        finally:
            if share is not None and taken is not None:
                share.give_back(taken)

    def _plan(self, ctx: RequestContext, target: Target) -> list[Target]:
        if self._pool is None or ctx.deployment is None:
            return [target]
        plan = self._pool.plan(ctx.deployment, first=target)
        if plan:
            return plan
        seconds = self._pool.retry_in(ctx.deployment)
        if seconds <= 0:
            return [target]
        raise TooManyRequests(
            "Every backend of this deployment is rate limited by Azure OpenAI or unreachable "
            "right now. "
            f"Please retry after {max(1, math.ceil(seconds))} seconds.",
            reason="upstream_backends_exhausted",
            headers={
                "retry-after": str(max(1, math.ceil(seconds))),
                "retry-after-ms": str(max(1, math.ceil(seconds * 1000))),
            },
        )

    async def _send(
        self,
        request: Incoming,
        ctx: RequestContext,
        target: Target,
        body: bytes,
        last: bool,
        pool: UpstreamPool | None,
    ) -> UpstreamAnswer | None:
        """The upstream's response; ``None`` when it could not be reached and another backend
        may be tried (the request certainly did not get through)."""
        assert ctx.route is not None
        headers = request_headers(request.headers.items(), target.upstream.provider.auth_headers())
        try:
            return await self._client.send(
                ctx.route.operation.method,
                upstream_url(target, ctx.route),
                headers,
                body,
                target.upstream.ssl,
            )
        except UpstreamTimedOut as exc:
            raise _timeout(target) from exc
        except UpstreamNotReached as exc:
            if pool is None:
                raise _unreachable(target, exc) from exc
            held = pool.failed(target, None)
            if last:
                raise _unreachable(target, exc) from exc
            log.warning(
                "upstream %s unreachable (%s); out for %.1fs, failing over",
                target.upstream.name,
                exc.cause,
                held,
            )
            return None
        except UpstreamFailed as exc:
            raise _unreachable(target, exc) from exc

    async def _relay(
        self,
        request: Incoming,
        ctx: RequestContext,
        target: Target,
        upstream: UpstreamAnswer,
        sent: float,
    ) -> Answer | StreamedAnswer:
        async with upstream:
            ctx.upstream_status = upstream.status
            _check_status(upstream, target)
            out_headers = response_headers(upstream.headers.items(), ctx.request_id)
            out_headers.update(ctx.response_headers)
            if upstream.content_type == "text/event-stream":
                if ctx.hold is not None:  # nothing of the stream before the verdict
                    await ctx.hold()
                ctx.streamed = True
                try:
                    return await self._stream(request, upstream, out_headers, target, ctx)
                finally:
                    ctx.upstream_ms = (time.perf_counter() - sent) * 1000
            try:
                payload = await upstream.read_all(self._max_answer)
            except UpstreamTimedOut as exc:
                raise _timeout(target) from exc
            except UpstreamTooLarge as exc:
                raise _too_large(target, self._max_answer) from exc
            except UpstreamFailed as exc:
                raise _unreachable(target, exc) from exc
            ctx.upstream_ms = (time.perf_counter() - sent) * 1000
            parsed = None
            if upstream.status == 200 and upstream.content_type == "application/json":
                parsed = _json(payload)
                ctx.usage = _usage_in(parsed)
            guard = ctx.answer_guard
            if guard is not None:  # the guardrails read the answer before it is released
                payload = await guard.body(upstream.status, upstream.content_type, payload, parsed)
            return request.answer(upstream.status, out_headers, payload)

    async def _stream(
        self,
        request: Incoming,
        upstream: UpstreamAnswer,
        headers: MutableMapping[str, str],
        target: Target,
        ctx: RequestContext,
    ) -> StreamedAnswer:
        response = request.stream(upstream.status, headers)
        tap = SseTap(
            strip_usage_chunk=ctx.stream_requested and not ctx.usage_requested,
            max_event_bytes=self._max_answer,
        )
        sent = StreamedText()  # what the client received, to charge a stream cut short
        guard = ctx.answer_guard
        read, write = upstream.read_chunk, response.write
        try:
            await response.start()
            while True:
                try:
                    chunk = await read()
                    out = tap.feed(chunk)
                    if guard is not None and out:
                        out = guard.feed(out)  # held back until judged (or the stream's end)
                except UpstreamFailed as exc:
                    ctx.upstream_broke = True
                    err = _stream_broken(target, exc, self._max_answer)
                    if isinstance(exc, UpstreamTooLarge):
                        upstream.close()  # the rest is never read
                    if guard is not None:  # what was held back is judged and sent first
                        held = guard.flush(b"")
                        if held:
                            if tap.usage is None:
                                sent.add(held)
                            await write(held)
                        if guard.cut:
                            break
                    await write(sse_error_event(err))
                    break
                if not chunk:
                    break
                if out:
                    if tap.usage is None:
                        sent.add(out)
                    await write(out)
                if guard is not None and guard.cut:
                    upstream.close()  # the rest of a blocked answer is never read
                    break
            rest = tap.flush()
            if guard is not None and guard.cut:
                rest = b""
            elif guard is not None:
                rest = guard.flush(rest)
                if rest and tap.usage is None:
                    sent.add(rest)
            await response.write_eof(rest)  # the held tail and the end: one write
        except ClientGone:
            ctx.client_disconnected = True
            upstream.close()
        ctx.usage = tap.usage
        if tap.usage is None:
            ctx.streamed_text.append(sent.text())
        return response


def _body_for(body: bytes, ctx: RequestContext, first: Target, backend: Target) -> bytes:
    """The body for ``backend``: the v1 family names the upstream deployment in ``model``."""
    payload = ctx.payload
    if backend.deployment == first.deployment or payload is None or ctx.route is None:
        return body
    if ctx.route.deployment is not None:  # legacy: the deployment is in the URL
        return body
    return orjson.dumps({**payload, "model": backend.deployment})


def _json(payload: bytes) -> Any:
    """The answer's JSON (``None`` when it is not JSON): read once, for the usage and the
    guardrails."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _usage_in(obj: Any) -> Usage | None:
    usage = obj.get("usage") if isinstance(obj, dict) else None
    return Usage.from_azure(usage) if isinstance(usage, dict) else None


def _check_status(upstream: UpstreamAnswer, target: Target) -> None:
    status = upstream.status
    if 300 <= status < 400:
        log.error(
            "upstream %s answered a redirect (%d); not followed", target.upstream.name, status
        )
        raise UpstreamError(
            "The upstream answered with a redirect, which Keyguard does not follow.",
            reason="upstream_redirect",
        )
    if status in (401, 403):
        log.error(
            "upstream %s rejected Keyguard's credential (%d); check its credential reference",
            target.upstream.name,
            status,
        )
        raise UpstreamError(
            "Keyguard could not authenticate to the Azure OpenAI upstream. Your credential was "
            "accepted; the gateway's operators have been told.",
            reason="upstream_auth_failed",
        )


def _timeout(target: Target) -> UpstreamError:
    return UpstreamError(
        f"The Azure OpenAI upstream '{target.upstream.name}' did not answer in time.",
        status=504,
        reason="upstream_timeout",
    )


def _too_large(target: Target, limit: int) -> UpstreamError:
    log.warning(
        "upstream %s answered more than proxy.max_answer_bytes (%d); not relayed",
        target.upstream.name,
        limit,
    )
    return UpstreamError(
        f"The Azure OpenAI upstream's answer is larger than this gateway relays ({limit} "
        "bytes, proxy.max_answer_bytes); ask for less at once (fewer inputs or choices).",
        reason="upstream_answer_too_large",
    )


def _stream_broken(target: Target, exc: UpstreamFailed, limit: int) -> UpstreamError:
    """What a stream's client is told when the upstream failed part-way (logged here)."""
    if isinstance(exc, UpstreamTooLarge):
        log.warning(
            "upstream %s sent more than proxy.max_answer_bytes (%d) in one event, or before "
            "the guardrails could judge it; the stream ended",
            target.upstream.name,
            limit,
        )
        return UpstreamError(
            "The Azure OpenAI upstream sent more at once than this gateway holds "
            f"({limit} bytes, proxy.max_answer_bytes).",
            reason="upstream_event_too_large",
        )
    log.warning("upstream %s broke off a stream: %s", target.upstream.name, exc.cause)
    return UpstreamError(
        "The Azure OpenAI upstream broke off in the middle of the stream.",
        reason="upstream_stream_broken",
    )


def _unreachable(target: Target, exc: UpstreamFailed) -> UpstreamError:
    log.warning("upstream %s unreachable: %s", target.upstream.name, exc.cause)
    return UpstreamError(
        f"The Azure OpenAI upstream '{target.upstream.name}' cannot be reached.",
        reason="upstream_unreachable",
    )
