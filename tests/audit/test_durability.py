"""Durability of the audit log, measured on a real ``keyguard serve`` process.

Traffic runs through the gateway; then its processes are killed with SIGKILL (no chance to flush)
or stopped with SIGTERM. Every answered request is looked up in the audit log by its request id.
After SIGKILL at most the last second of records may be missing (the writer flushes every
0.2 s), also when the worker is saturated (each client sends its next request as soon as its
answer came: the monitor's detection work must not hold records back), none with
``durability: before_answer``, and the writer's chain is left open (a note,
not a failure: every batch committed carries its checkpoint); after SIGTERM nothing is missing
and the chain is closed by a record a checkpoint seals. The trail verifies in both cases. The
measured loss is printed (run with ``-s`` to see it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import pytest

from keyguard.config import load_settings
from keyguard.emulator.server import RunningEmulator
from keyguard.store.packing import unpack
from keyguard.wiring.runtime import open_runtime
from tests.support.gateway import store_secrets
from tests.support.settings import free_port, keyguard_config, upstream, write_config

pytestmark = pytest.mark.slow
CHAT = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
CLIENTS = 8


async def _start(
    tmp: Path, emulator: RunningEmulator, durability: str = "batch"
) -> tuple[subprocess.Popen[bytes], str, str, str]:
    """``keyguard serve`` started: its process, the proxy's and the admin port's URLs, a key."""
    proxy, admin = free_port(), free_port()
    config = keyguard_config(
        tmp,
        upstreams=[upstream(emulator.url)],
        listen={"proxy": f"127.0.0.1:{proxy}", "admin": f"127.0.0.1:{admin}"},
        proxy={"access_log": False},
        monitor={"audit": {"durability": durability}},
    )
    settings = load_settings(write_config(tmp, config))  # what ``keyguard serve`` reads
    await store_secrets(settings, {"upstream/emulator": emulator.keys()[0]})
    rt = await open_runtime(settings, {})
    try:
        _, key = await rt.keys.create("durable", now=datetime.now(UTC))
    finally:
        await rt.close()
    with open(tmp / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from keyguard.cli.main import main; main()",
                "serve",
                "-c",
                str(tmp / "keyguard.yaml"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    base = f"http://127.0.0.1:{proxy}"
    async with aiohttp.ClientSession() as http:
        for _ in range(1200):  # wait for readiness (bounded: 60 s)
            try:
                async with http.get(f"http://127.0.0.1:{admin}/healthz") as resp:
                    if resp.status == 200:
                        return proc, base, f"http://127.0.0.1:{admin}", key
            except aiohttp.ClientError:
                pass
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("keyguard serve did not start: " + (tmp / "serve.log").read_text())


PACED = 120.0  # requests a second, all clients together, below what one worker serves


async def _traffic(
    base: str,
    key: str,
    seconds: float,
    took: list[float] | None = None,
    rate: float | None = PACED,
) -> list[tuple[str, float]]:
    """Concurrent clients for ``seconds``; (request id, monotonic time answered) per request
    (and each request's time in ``took``). ``rate``: requests a second, all clients together;
    ``None``: each client sends its next request as soon as its answer came (one worker is
    saturated)."""
    done: list[tuple[str, float]] = []
    stop = time.monotonic() + seconds

    async def client(http: aiohttp.ClientSession) -> None:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        while time.monotonic() < stop:
            sent = time.monotonic()
            async with http.post(base + CHAT, headers={"api-key": key}, json=body) as resp:
                await resp.read()
                assert resp.status == 200
                done.append((resp.headers["x-keyguard-request-id"], time.monotonic()))
            if took is not None:
                took.append(time.monotonic() - sent)
            if rate is not None:
                await asyncio.sleep(max(0.0, sent + CLIENTS / rate - time.monotonic()))

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
    return done


def _audited(db: Path) -> tuple[set[str], int, int]:
    with closing(sqlite3.connect(db)) as conn, conn:
        ids = {
            orjson.loads(d or unpack(p))["request_id"]
            for d, p in conn.execute(
                "select data, packed from audit_records where kind = 'request'"
            )
        }
        last = conn.execute("select max(seq) from audit_records").fetchone()[0] or 0
        sealed = conn.execute("select max(seq) from audit_checkpoints").fetchone()[0] or 0
    return ids, last, sealed


async def _verify(tmp: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from keyguard.cli.main import main; main()",
        "audit",
        "verify",
        "-c",
        str(tmp / "keyguard.yaml"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


GAUGES = ("keyguard_monitor_pending", "keyguard_audit_queued", "keyguard_monitor_lag_seconds")


async def _gauges(admin: str, until: float, into: list[dict[str, float]]) -> None:
    """The monitor's and the audit's backlog, read from ``/metrics`` every 0.5 s."""
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < until:
            await asyncio.sleep(0.5)
            async with http.get(admin + "/metrics") as resp:
                text = await resp.text()
            into.append(
                {
                    name: float(line.split()[-1])
                    for line in text.splitlines()
                    for name in GAUGES
                    if line.startswith(name + " ")
                }
            )


@pytest.mark.parametrize(
    ("durability", "rate"),
    [("batch", None), ("batch", PACED), ("before_answer", PACED)],
    ids=["batch-saturated", "batch-paced", "before_answer-paced"],
)
async def test_kill_9_loses_at_most_the_last_second(
    tmp_path: Path, emulator: RunningEmulator, durability: str, rate: float | None
) -> None:
    """``rate`` None: 8 clients as fast as one worker answers (the monitor's detection work
    must not hold the audit back); else paced below that."""
    proc, base, admin, key = await _start(tmp_path, emulator, durability)
    try:
        took: list[float] = []
        seen: list[dict[str, float]] = []
        watch = asyncio.create_task(_gauges(admin, time.monotonic() + 2.9, seen))
        answered = await _traffic(base, key, 3.0, took, rate)
        await watch
        # the worker writes the audit: it and its supervisor die at once, no chance to flush
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children, "keyguard serve runs its gateway in a worker process"
        os.kill(proc.pid, signal.SIGKILL)
        for worker in children:
            os.kill(int(worker), signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    ids, _, _ = _audited(tmp_path / "keyguard.db")
    lost = [(rid, killed_at - at) for rid, at in answered if rid not in ids]
    oldest = max((age for _, age in lost), default=0.0)
    pending, queued, lag = GAUGES
    print(
        f"\nkill -9 ({durability}, {'saturated' if rate is None else f'{rate:.0f}/s'}): "
        f"{len(answered)} requests answered in 3 s, {len(lost)} missing from the "
        f"audit log ({100 * len(lost) / len(answered):.1f}%); the oldest missing one was "
        f"answered {oldest * 1000:.0f} ms before the kill; {CLIENTS} clients, request time "
        f"median {1000 * statistics.median(took):.1f} ms, p99 "
        f"{1000 * sorted(took)[int(0.99 * (len(took) - 1))]:.1f} ms; every 0.5 s, waiting for "
        "the detectors (their lag) / audit records queued: "
        + ", ".join(
            f"{g.get(pending, 0):g} ({1000 * g.get(lag, 0):.0f} ms) / {g.get(queued, 0):g}"
            for g in seen
        )
    )
    assert answered and oldest <= 1.0, lost[:5]
    if durability == "before_answer":  # no answer left before its record was committed
        assert lost == []
    out = await _verify(tmp_path)  # every committed batch carries its checkpoint
    assert "ok: every chain is intact" in out and "stopped without a clean shutdown" in out


async def test_graceful_stop_loses_nothing_and_seals_the_chain(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    proc, base, _, key = await _start(tmp_path, emulator)
    try:
        answered = await _traffic(base, key, 1.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    ids, last, sealed = _audited(tmp_path / "keyguard.db")
    missing = [rid for rid, _ in answered if rid not in ids]
    print(f"\nSIGTERM: {len(answered)} requests answered, {len(missing)} missing; sealed {sealed}")
    assert not missing and sealed == last
    out = await _verify(tmp_path)
    assert "ok: every chain is intact" in out and "was not closed" not in out
