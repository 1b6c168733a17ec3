"""The request pipeline driven through the transport seam alone: a tiny in-memory request,
answer and upstream client (no HTTP stack, no socket) are all the handler and the relay need.

The fakes implement only what :mod:`keyguard.core.transport` declares; mypy checks that they
do, and these tests that the pipeline works over them: a JSON answer relayed whole, a streamed
answer relayed chunk by chunk, a client that leaves in the middle of a stream (the upstream is
dropped and only what was sent is charged), fail-over on a connection that could not be made,
a body above the cap arriving without a length, and a mutual-TLS certificate presented.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from keyguard.core.request import RequestContext
from keyguard.core.transport import (
    Answer,
    ClientGone,
    Incoming,
    StreamedAnswer,
    UpstreamAnswer,
    UpstreamClient,
)
from keyguard.errors import UpstreamNotReached, UpstreamTooLarge
from keyguard.events import EventBus
from keyguard.guard.engine import GuardEngine
from keyguard.guard.findings import Match, Slot
from keyguard.guard.settings import GuardSettings
from keyguard.identity.authenticator import Authenticator
from keyguard.identity.keys import KeyAuthenticator
from keyguard.proxy.app import ProxyHandler
from keyguard.proxy.big_reads import INLINE_CHARS, BigReads
from keyguard.proxy.guardrails import GuardStage
from keyguard.proxy.relay import Relay
from keyguard.upstream.pool import Target, Upstream, UpstreamPool
from keyguard.wiring.guard import guard_stage
from keyguard.wiring.runtime import Runtime

API = "2024-10-21"
CHAT = f"/openai/deployments/gpt/chat/completions?api-version={API}"
MAX_BODY = 4096


class FakeAnswer:
    streamed: Literal[False] = False

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers: CIMultiDict[str] = CIMultiDict(headers)
        self.body = body


class FakeStream:
    """A streamed answer whose client takes ``accept`` writes, then is gone."""

    streamed: Literal[True] = True

    def __init__(self, status: int, headers: Mapping[str, str], accept: int) -> None:
        self.status = status
        self.headers = dict(headers)
        self.written: list[bytes] = []
        self.ended = False
        self._accept = accept
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> None:
        self._started = True

    async def write(self, data: bytes) -> None:
        if len(self.written) == self._accept:
            raise ClientGone("the client went away")
        self.written.append(data)

    async def write_eof(self, data: bytes = b"") -> None:
        if data:
            await self.write(data)
        self.ended = True


class FakeIncoming:
    def __init__(
        self,
        body: bytes,
        *,
        headers: dict[str, str],
        chunks: list[bytes] | None = None,
        certificate: bytes | None = None,
        accept: int = 1000,
    ) -> None:
        self.method = "POST"
        self.raw_path = CHAT
        self.path = CHAT.partition("?")[0]
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict(headers))
        self.content_length = None if chunks is not None else len(body)
        self.content_type = "application/json"
        self.remote: str | None = "192.0.2.7"
        self._chunks = chunks if chunks is not None else [body]
        self._certificate = certificate
        self._accept = accept
        self.streams: list[FakeStream] = []

    def peer_certificate(self) -> bytes | None:
        return self._certificate

    async def read_body(self, limit: int) -> bytes | None:
        body = b""
        for chunk in self._chunks:  # as a server does: refused as soon as it is too long
            body += chunk
            if len(body) > limit:
                return None
        return body

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> FakeAnswer:
        return FakeAnswer(status, headers, body)

    def stream(self, status: int, headers: Mapping[str, str]) -> FakeStream:
        self.streams.append(FakeStream(status, headers, self._accept))
        return self.streams[-1]


class FakeUpstreamAnswer:
    def __init__(self, status: int, content_type: str, chunks: list[bytes]) -> None:
        self.status = status
        self.content_type = content_type
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(
            CIMultiDict({"Content-Type": content_type, "x-ms-region": "westeurope"})
        )
        self._chunks = list(chunks)
        self.closed = self.released = False

    async def read_all(self, limit: int) -> bytes:
        body, self._chunks = b"".join(self._chunks), []
        if len(body) > limit:
            raise UpstreamTooLarge("body")
        return body

    async def read_chunk(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True

    async def __aenter__(self) -> FakeUpstreamAnswer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class FakeUpstream:
    """Answers from a script, one per request; ``unreachable`` endpoints fail to connect."""

    def __init__(self, answers: list[FakeUpstreamAnswer], unreachable: frozenset[str]) -> None:
        self.answers = answers
        self.unreachable = unreachable
        self.sent: list[tuple[str, str, dict[str, str], bytes]] = []

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, tls: Any
    ) -> FakeUpstreamAnswer:
        self.sent.append((method, url, dict(headers), body))
        if any(url.startswith(endpoint) for endpoint in self.unreachable):
            raise UpstreamNotReached("ConnectionRefusedError")
        return self.answers.pop(0)

    async def close(self) -> None:
        return None


class Settled:
    """The limits hook: what the request held, and what it was charged on settling."""

    def __init__(self) -> None:
        self.settled: list[RequestContext] = []

    async def admit(self, ctx: RequestContext) -> str:
        return "held"

    async def settle(self, ctx: RequestContext, held: str | None) -> None:
        assert held == "held"
        self.settled.append(ctx)


class Keys:
    def __init__(self, authenticator: KeyAuthenticator, full: str) -> None:
        self.authenticator, self.full = authenticator, full


class Provider:
    def auth_headers(self) -> dict[str, str]:
        return {"api-key": "upstream-secret"}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


# The fakes are what the seam declares, no more (mypy checks these).
_INCOMING: type[Incoming] = FakeIncoming
_ANSWER: type[Answer] = FakeAnswer
_STREAM: type[StreamedAnswer] = FakeStream
_UPSTREAM_ANSWER: type[UpstreamAnswer] = FakeUpstreamAnswer
_UPSTREAM: type[UpstreamClient] = FakeUpstream


@pytest.fixture
def rt(sqlite_runtime: Runtime) -> Runtime:
    return sqlite_runtime


@pytest.fixture
async def keys(rt: Runtime) -> AsyncIterator[Keys]:
    _, full = await rt.keys.create("billing", now=datetime.now(UTC))
    auth = KeyAuthenticator(rt.store, rt.keys, ttl=60)
    try:
        yield Keys(auth, full)
    finally:
        await auth.close()


def gateway(
    keys: Keys,
    answers: list[FakeUpstreamAnswer],
    *,
    backends: int = 1,
    unreachable: frozenset[str] = frozenset(),
    certificates: Any = None,
    guard: GuardStage | None = None,
    max_answer_bytes: int = 1 << 20,
    max_body: int = MAX_BODY,
) -> tuple[ProxyHandler, FakeUpstream, Settled]:
    ups = [Upstream(f"az{i}", f"https://az{i}.example", Provider()) for i in range(backends)]
    targets = [Target(up, "gpt", priority=i) for i, up in enumerate(ups)]
    pool = UpstreamPool(ups, {"gpt": targets})
    client = FakeUpstream(answers, unreachable)
    limits = Settled()
    events = EventBus()
    handler = ProxyHandler(
        pool=pool,
        identity=Authenticator(keys.authenticator, events=events, certificates=certificates),
        relay=Relay(client, pool, max_answer_bytes=max_answer_bytes),
        max_body_bytes=max_body,
        admission=limits,
        events=events,
        guard=guard,
    )
    return handler, client, limits


def chat(stream: bool = False) -> bytes:
    return orjson.dumps({"messages": [{"role": "user", "content": "Say hello"}], "stream": stream})


def sse(text: str) -> bytes:
    delta = {"choices": [{"index": 0, "delta": {"content": text}}]}
    return b"data: " + orjson.dumps(delta) + b"\n\n"


async def test_a_json_answer_is_relayed_whole(keys: Keys) -> None:
    body = orjson.dumps(
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}
    )
    handler, client, limits = gateway(keys, [FakeUpstreamAnswer(200, "application/json", [body])])
    request = FakeIncoming(chat(), headers={"api-key": keys.full, "x-stainless-lang": "python"})

    answer = await handler(request)

    assert isinstance(answer, FakeAnswer)
    assert answer.status == 200 and answer.body == body
    assert answer.headers["x-ms-region"] == "westeurope"
    assert answer.headers["Server"] == "keyguard"
    [(method, url, sent_headers, sent_body)] = client.sent
    assert method == "POST" and url == f"https://az0.example{CHAT}"
    assert sent_headers["api-key"] == "upstream-secret"  # the client's key never leaves
    assert sent_body == chat()
    [ctx] = limits.settled
    assert ctx.usage is not None and ctx.usage.total_tokens == 12
    assert ctx.remote == "192.0.2.7" and ctx.client == "python/////"


async def test_a_stream_is_relayed_chunk_by_chunk(keys: Keys) -> None:
    chunks = [sse("Hel"), sse("lo"), b"data: [DONE]\n\n"]
    upstream = FakeUpstreamAnswer(200, "text/event-stream", chunks)
    handler, _, limits = gateway(keys, [upstream])
    request = FakeIncoming(chat(stream=True), headers={"api-key": keys.full})

    answer = await handler(request)

    [stream] = request.streams
    assert answer is stream and stream.started and stream.ended
    assert b"".join(stream.written) == b"".join(chunks)
    [ctx] = limits.settled
    assert ctx.streamed and not ctx.client_disconnected and ctx.status == 200
    assert not upstream.closed and upstream.released


async def test_a_client_gone_mid_stream_drops_the_upstream_and_is_charged_what_it_got(
    keys: Keys,
) -> None:
    chunks = [sse("Hel"), sse("lo there"), sse(", a long"), sse(" answer"), b"data: [DONE]\n\n"]
    upstream = FakeUpstreamAnswer(200, "text/event-stream", chunks)
    handler, _, limits = gateway(keys, [upstream])
    request = FakeIncoming(chat(stream=True), headers={"api-key": keys.full}, accept=2)

    await handler(request)

    [stream] = request.streams
    assert stream.written == chunks[:2] and not stream.ended
    assert upstream.closed  # the rest of the answer is not read
    [ctx] = limits.settled
    assert ctx.client_disconnected
    # charged: what the client received, and the chunk whose write failed (it may have
    # partly arrived); not what was never read
    assert ctx.streamed_text == ["Hello there, a long"]


async def test_an_answer_above_the_cap_is_a_502_that_names_the_setting(keys: Keys) -> None:
    body = orjson.dumps({"choices": [], "data": "x" * 2000})
    upstream = FakeUpstreamAnswer(200, "application/json", [body])
    handler, _, limits = gateway(keys, [upstream], max_answer_bytes=1000)

    answer = await handler(FakeIncoming(chat(), headers={"api-key": keys.full}))

    assert isinstance(answer, FakeAnswer) and answer.status == 502
    error = orjson.loads(answer.body)["error"]
    assert error["code"] == "BadGateway" and "proxy.max_answer_bytes" in error["message"]
    assert b"xxxx" not in answer.body
    [ctx] = limits.settled
    assert ctx.reason == "upstream_answer_too_large"


async def test_a_stream_event_above_the_cap_ends_the_stream_with_an_error(keys: Keys) -> None:
    chunks = [sse("Hel"), b"data: {" + b"x" * 600, b"y" * 600, sse("never")]
    upstream = FakeUpstreamAnswer(200, "text/event-stream", chunks)
    handler, _, limits = gateway(keys, [upstream], max_answer_bytes=1000)
    request = FakeIncoming(chat(stream=True), headers={"api-key": keys.full})

    await handler(request)

    [stream] = request.streams
    assert stream.written[0] == sse("Hel") and stream.ended
    sent = b"".join(stream.written)
    assert b"upstream_event_too_large" not in sent  # the reason is the log's, not the client's
    assert b"proxy.max_answer_bytes" in sent and b"xxxx" not in sent and b"never" not in sent
    assert upstream.closed  # the rest is not read
    [ctx] = limits.settled
    assert ctx.upstream_broke and ctx.streamed_text == ["Hel"]


async def test_a_backend_that_cannot_be_reached_fails_over(keys: Keys) -> None:
    body = orjson.dumps({"choices": []})
    answers = [FakeUpstreamAnswer(200, "application/json", [body])]
    handler, client, _ = gateway(
        keys, answers, backends=2, unreachable=frozenset({"https://az0.example"})
    )

    answer = await handler(FakeIncoming(chat(), headers={"api-key": keys.full}))

    assert isinstance(answer, FakeAnswer) and answer.status == 200
    assert [url.partition("/openai")[0] for _, url, _, _ in client.sent] == [
        "https://az0.example",
        "https://az1.example",
    ]


async def test_a_body_above_the_cap_without_a_length_is_413(keys: Keys) -> None:
    handler, client, limits = gateway(keys, [])
    chunks = [b"x" * 1000] * 5  # no content-length: the cap applies as the chunks arrive
    request = FakeIncoming(b"", headers={"api-key": keys.full}, chunks=chunks)

    answer = await handler(request)

    assert isinstance(answer, FakeAnswer) and answer.status == 413
    assert orjson.loads(answer.body)["error"]["code"] == "RequestEntityTooLarge"
    assert client.sent == [] and limits.settled == []


async def test_a_verified_client_certificate_authenticates(keys: Keys) -> None:
    class Certificates:
        def __init__(self) -> None:
            self.seen: list[bytes] = []

        def authenticate(self, der: bytes) -> Any:
            from keyguard.core.principal import Principal

            self.seen.append(der)
            return Principal(kind="cert", id="cert:0123", app="billing")

    certificates = Certificates()
    body = orjson.dumps({"choices": []})
    handler, _, limits = gateway(
        keys, [FakeUpstreamAnswer(200, "application/json", [body])], certificates=certificates
    )

    answer = await handler(FakeIncoming(chat(), headers={}, certificate=b"0\x82der"))

    assert isinstance(answer, FakeAnswer) and answer.status == 200
    assert certificates.seen == [b"0\x82der"]
    [ctx] = limits.settled
    assert ctx.principal is not None and ctx.principal.id == "cert:0123"


async def test_a_guarded_stream_leaves_no_request_to_the_cycle_collector(
    keys: Keys, rt: Runtime
) -> None:
    """The answer's guardrails refer back to the request while it is relayed; once it is
    answered the request must be freed by reference counting alone. Left in a cycle, every
    request's context (its body, payload and stream pieces) waits for the cycle collector:
    memory held for nothing, and collections on the request path."""
    stage = guard_stage(rt, None)
    assert stage is not None  # the default: guardrails on
    chunks = [sse("Hel"), sse("lo"), b"data: [DONE]\n\n"]
    handler, _, limits = gateway(
        keys, [FakeUpstreamAnswer(200, "text/event-stream", chunks)], guard=stage
    )
    gc.collect()
    gc.disable()
    try:
        request = FakeIncoming(chat(stream=True), headers={"api-key": keys.full})
        answer = await handler(request)
        assert answer.status == 200 and request.streams[0].ended
        await asyncio.sleep(0)  # one turn of the loop: the request is recorded (call_soon)
        [ctx] = limits.settled
        assert ctx.guardrails == []  # the guardrails read the answer: nothing found
        del ctx, answer, request
        limits.settled.clear()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, RequestContext)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []


class HeldEngine(GuardEngine):
    """The default detectors, holding each large read until released (a test's hand on the
    worker thread)."""

    def __init__(self) -> None:
        super().__init__(GuardSettings())
        self.reading = threading.Event()
        self.release = threading.Event()
        self.large_reads = 0

    def scan_slots(self, slots: Sequence[Slot]) -> list[tuple[Slot, Match]]:
        if sum(len(slot.text) for slot in slots) > INLINE_CHARS:
            self.large_reads += 1
            self.reading.set()
            assert self.release.wait(30)
        return super().scan_slots(slots)


async def test_a_second_large_request_of_a_caller_being_read_is_a_429_before_it_is_read(
    keys: Keys,
) -> None:
    """... when it would wait: every reader is busy (here the only one)."""
    engine = HeldEngine()
    stage = GuardStage(
        engine, GuardSettings(), fingerprint=lambda value: "fp", events=EventBus(),
        now=lambda: datetime.now(UTC),
    )  # fmt: skip
    stage.big_reads = BigReads(running=1)
    ok = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 1, "total_tokens": 1}})
    answers = [FakeUpstreamAnswer(200, "application/json", [ok]) for _ in range(3)]
    handler, client, _ = gateway(keys, answers, guard=stage, max_body=1 << 20)
    large = orjson.dumps({"messages": [{"role": "user", "content": "word " * 20_000}]})
    headers = {"api-key": keys.full}

    first = asyncio.create_task(handler(FakeIncoming(large, headers=headers)))
    assert await asyncio.to_thread(engine.reading.wait, 30)
    refused = await handler(FakeIncoming(large, headers=headers))
    small = await handler(FakeIncoming(chat(), headers=headers))  # read on the loop: served
    engine.release.set()
    served = await first

    assert isinstance(refused, FakeAnswer) and refused.status == 429
    assert refused.headers["retry-after"] == "1"
    error = orjson.loads(refused.body)["error"]
    assert error["code"] == "429" and "large request" in error["message"]
    assert engine.large_reads == 1  # the refused body was never read
    assert small.status == 200 and served.status == 200 and len(client.sent) == 2
    assert (await handler(FakeIncoming(large, headers=headers))).status == 200  # room again
