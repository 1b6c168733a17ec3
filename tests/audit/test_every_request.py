"""Every request that reaches the handler leaves exactly one audit record and one observation,
whatever its body holds; the chain still verifies."""

from __future__ import annotations

import asyncio
import http.client
import json
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyguard.cli.main import cli
from keyguard.emulator import EmulatorConfig, start_emulator
from keyguard.emulator.server import RunningEmulator
from keyguard.events import Event, SecurityEvent
from keyguard.store.packing import unpack
from tests.integration.harness import GatewayHarness, harnessed
from tests.support.settings import keyguard_settings, upstream, write_config

CHAT = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"
HI = [{"role": "user", "content": "hello"}]


def audit_rows(db: Path) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(db)) as conn, conn:
        found = conn.execute(
            "select data, packed from audit_records where kind = 'request' order by seq"
        )
        return [orjson.loads(data or unpack(packed)) for data, packed in found]


async def test_numbers_beyond_64_bits_are_recorded_and_detected(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """``"seed": 1e20`` once made the audit record unwritable: the request went unrecorded,
    the detectors never saw it, and probes made that way opened no incident."""
    events: list[Event] = []
    async with harnessed(tmp_path, emulator) as gw:
        gw.runtime.events.subscribe(events.append)
        _, key = await gw.new_key("prober")
        ids = []
        async with aiohttp.ClientSession() as http:
            for n, deployment in enumerate(["gpt-4o", *(f"probe-{i}" for i in range(6))]):
                body = {"messages": HI, "max_tokens": 1, "seed": 1e20 if n % 2 else -1e19}
                async with http.post(
                    gw.url + CHAT.format(deployment), headers={"api-key": key}, json=body
                ) as resp:
                    assert resp.status == (200 if deployment == "gpt-4o" else 404)
                    ids.append(resp.headers["x-keyguard-request-id"])
        monitoring = gw.gateway.monitoring
        assert monitoring is not None
        await monitoring.recorder.drain()
        assert monitoring.recorder.errors == 0
    records = {r["request_id"]: r for r in audit_rows(tmp_path / "keyguard.db")}
    assert set(ids) <= set(records)
    assert all(records[i].get("out_of_range") is True for i in ids)
    assert records[ids[0]]["seed"] == -(2**63 - 1)
    kinds = {e.kind for e in events if isinstance(e, SecurityEvent)}
    assert "enumeration" in kinds, kinds


# -- property: generated bodies -----------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-(2**80), 2**80).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "1E+999", "0.0000001"]),
)
TEXTS = st.one_of(
    st.text(max_size=20).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.text(max_size=20).map(json.dumps),  # unicode escapes
    st.sampled_from(['"\\ud800"', '"\\u0000"', '"\\uDFFF\\uD800"']),  # lone surrogates
)
FIELDS = st.sampled_from(
    ["seed", "max_tokens", "temperature", "n", "stream", "model", "Stream", "messages", "x"]
)


def _value(depth: int) -> st.SearchStrategy[str]:
    scalars = st.one_of(NUMBERS, TEXTS, st.sampled_from(["true", "false", "null"]))
    if depth <= 0:
        return scalars
    inner = _value(depth - 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(FIELDS, inner), max_size=3).map(
            lambda kv: "{" + ",".join(f'"{k}":{v}' for k, v in kv) + "}"
        ),
    )


BODIES = st.one_of(
    st.lists(st.tuples(FIELDS, _value(3)), max_size=6).map(
        lambda kv: (
            '{"messages":[{"role":"user","content":"hi"}]'
            + "".join(f',"{k}":{v}' for k, v in kv)
            + "}"
        ).encode()
    ),  # fmt: skip
    st.binary(max_size=64),  # not UTF-8, not JSON
    st.integers(1, 200).map(lambda d: b'{"a":' * d + b"1" + b"}" * d),  # deep nesting
)


class Background:
    """A monitored gateway on an event loop of its own thread, for a synchronous property
    test that sends requests with a blocking client."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.ready: Future[GatewayHarness] = Future()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.main(),))

    async def main(self) -> None:
        self.stop = asyncio.Event()
        emulator = await start_emulator(EmulatorConfig())
        try:
            async with harnessed(self.tmp, emulator) as gw:
                self.ready.set_result(gw)
                await self.stop.wait()
        finally:
            await emulator.stop()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def __enter__(self) -> GatewayHarness:
        self.thread.start()
        return self.ready.result(timeout=60)

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=60)
        self.loop.close()


@pytest.fixture
def background(tmp_path: Path) -> Iterator[tuple[Background, GatewayHarness, str]]:
    bg = Background(tmp_path)
    with bg as gw:
        _, key = bg.call(gw.new_key("fuzzed"))
        yield bg, gw, key


def test_records_equal_requests_and_the_chain_verifies(
    background: tuple[Background, GatewayHarness, str], tmp_path: Path
) -> None:
    bg, gw, key = background
    host, port = gw.url.removeprefix("http://").split(":")
    sent: list[str] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(BODIES)
    def one(body: bytes) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request(
                "POST",
                CHAT.format("gpt-4o"),
                body=body,
                headers={"api-key": key, "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            resp.read()
            assert resp.status < 500, (resp.status, body[:200])
            sent.append(resp.headers["x-keyguard-request-id"])
        finally:
            conn.close()

    one()
    assert len(sent) >= 100  # hypothesis ran the examples
    monitoring = gw.gateway.monitoring
    assert monitoring is not None
    bg.call(monitoring.recorder.drain())
    assert monitoring.recorder.errors == 0
    recorded = [r["request_id"] for r in audit_rows(tmp_path / "keyguard.db")]
    assert sorted(recorded) == sorted(sent)  # exactly one record per request
    config = write_config(
        tmp_path, keyguard_settings(tmp_path, upstreams=[upstream(gw.emulator.url)])
    )
    result = CliRunner().invoke(cli, ["audit", "verify", "-c", str(config)])
    assert result.exit_code == 0 and "ok" in result.output, result.output
