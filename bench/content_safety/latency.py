"""What the Content Safety check adds to a request's latency, through a real gateway.

    .venv/bin/python bench/content_safety/latency.py            # ~3 min; one JSON line per case

The emulator runs in its own process (the upstream and the Content Safety service); the
gateway runs in this process; one client sends ``N`` sequential ~1 KB chat requests per case, in
``ROUNDS`` interleaved rounds; per case, the median over rounds of the median and of the 90th
percentile of the latency are printed, in milliseconds (and the range of the medians):

* ``off``                 no content_safety section (the baseline);
* ``before``              Prompt Shields + harm analysis before forwarding;
* ``concurrent``          the same beside the upstream call;
* ``before_slow``/``concurrent_slow``   the service and the model each take 30 ms (injected
                          latency): before adds the two, concurrent overlaps them.

The emulator answers the check at once, so ``before - off`` is Keyguard's own cost of a check
(two HTTP calls on loopback, JSON both ways) and not Azure's own time, which adds to
``before`` as it is (and, in ``concurrent``, only where it exceeds the model's).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from keyguard.config import settings_from_mapping
from keyguard.guard import extract
from keyguard.guard.findings import Slot
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.runtime import open_runtime

N = int(os.environ.get("N", "300"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
TOKEN = secrets.token_hex(16)
PROMPT = "Summarise the quarterly report in three bullet points. " * 18  # ~1 KB
_EMULATOR = f"""
import asyncio, json, sys
from keyguard.emulator import EmulatorConfig, start_emulator
async def main():
    emulator = await start_emulator(EmulatorConfig(control_token={TOKEN!r}), port=0)
    print(json.dumps({{"url": emulator.url, "key": emulator.keys()[0]}}), flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def _chat_slots(operation: str, body: Any) -> list[Slot]:
    """Chat messages by role (until the gateway's own extraction is there)."""
    return [
        Slot(("messages", i), m["role"], m["content"])
        for i, m in enumerate(body.get("messages", []))
        if isinstance(m.get("content"), str)
    ]


async def _gateway(tmp: Path, url: str, key: str, section: dict[str, Any] | None) -> Gateway:
    master = tmp / "master.key"
    if not master.exists():
        create_master_key_file(master)
    config: dict[str, Any] = {
        "listen": {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "store": f"sqlite:///{tmp / 'keyguard.db'}",
        "master_key_file": str(master),
        "proxy": {"access_log": False},
        "upstreams": [
            {"name": "e", "endpoint": url, "credential": {"vault": "up"}, "deployments": ["gpt-4o"]}
        ],
    }
    if section is not None:
        config["guardrails"] = {"content_safety": section}
    settings = settings_from_mapping(config)
    runtime = await open_runtime(settings, {})
    await runtime.vault.put("up", key)
    await runtime.vault.put("cs", key)
    await runtime.close()
    gateway = Gateway(settings, {})
    await gateway.start()
    return gateway


async def _case(
    tmp: Path, url: str, key: str, name: str, section: dict[str, Any] | None, slow: bool
) -> dict[str, Any]:
    gateway = await _gateway(tmp, url, key, section)
    assert gateway.runtime is not None
    _, app_key = await gateway.runtime.keys.create("bench", now=_now())
    target = (
        f"{gateway.proxy_url}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    )
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    control = {"x-emulator-token": TOKEN}
    latencies = []
    async with aiohttp.ClientSession() as http:
        if slow:
            fault = {"latency_ms": 30, "count": N + 20}
            await (await http.post(f"{url}/_emulator/faults", json=fault, headers=control)).read()
            fault = {"latency_ms": 30, "count": 2 * (N + 20)}  # two calls per request
            await (
                await http.post(
                    f"{url}/_emulator/content-safety/faults", json=fault, headers=control
                )
            ).read()
        for i in range(N + 20):
            start = time.perf_counter()
            async with http.post(target, json=body, headers={"api-key": app_key}) as response:
                await response.read()
                assert response.status == 200, (name, response.status)
            if i >= 20:  # warm-up
                latencies.append((time.perf_counter() - start) * 1000)
        await (await http.post(f"{url}/_emulator/reset", json={}, headers=control)).read()
    await gateway.stop()
    latencies.sort()
    return {
        "case": name,
        "n": N,
        "median_ms": round(statistics.median(latencies), 2),
        "p90_ms": round(latencies[int(len(latencies) * 0.9)], 2),
    }


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    if not extract.request_slots("chat", {"messages": [{"role": "user", "content": "x"}]}):
        extract.request_slots = _chat_slots  # type: ignore[assignment]
    process = subprocess.Popen([sys.executable, "-c", _EMULATOR], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        url, key = started["url"], started["key"]
        section = {
            "endpoint": url,
            "insecure_http": True,
            "credential": {"vault": "cs"},
            "harm": {"Hate": 4, "SelfHarm": 4, "Sexual": 4, "Violence": 4},
            "timeout_ms": 2000,
        }
        cases: list[tuple[str, dict[str, Any] | None, bool]] = [
            ("off", None, False),
            ("before", section, False),
            ("concurrent", {**section, "mode": "concurrent"}, False),
            ("off_slow", None, True),
            ("before_slow", section, True),
            ("concurrent_slow", {**section, "mode": "concurrent"}, True),
        ]
        results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in cases}
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(ROUNDS):  # interleaved, the start rotating: noise spreads
                turn = cases[round_ % len(cases) :] + cases[: round_ % len(cases)]
                for name, cs, slow in turn:
                    results[name].append(await _case(Path(tmp), url, key, name, cs, slow))
        for name, runs in results.items():
            medians = sorted(r["median_ms"] for r in runs)
            line = {
                "case": name,
                "n": N,
                "rounds": ROUNDS,
                "median_ms": statistics.median(medians),
                "median_range_ms": [medians[0], medians[-1]],
                "p90_ms": statistics.median(r["p90_ms"] for r in runs),
            }
            print(json.dumps(line), flush=True)
    finally:
        process.terminate()
        process.wait()


if __name__ == "__main__":
    asyncio.run(main())
