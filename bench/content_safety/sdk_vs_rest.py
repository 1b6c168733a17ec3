"""Client-side cost of one ``text:analyze`` call: ``azure-ai-contentsafety`` against plain
aiohttp, as Keyguard's client sends it. The SDK is not a Keyguard dependency, so this runs in
a throw-away virtualenv (the emulator runs from the project's own ``.venv``)::

    python3 -m venv /tmp/cs-sdk
    /tmp/cs-sdk/bin/pip install azure-ai-contentsafety==1.0.0 aiohttp orjson
    /tmp/cs-sdk/bin/python bench/content_safety/sdk_vs_rest.py

Prints, per client, the CPU time and the wall time per call (medians of 5 runs of N sequential
calls). The SDK 1.0.0 has no Prompt Shields call (``ContentSafetyClient`` offers
``analyze_text`` and ``analyze_image`` only), so it could replace half of the client at most.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import aiohttp
import orjson
from azure.ai.contentsafety.aio import ContentSafetyClient
from azure.ai.contentsafety.models import AnalyzeTextOptions
from azure.core.credentials import AzureKeyCredential

N = int(os.environ.get("N", "1000"))
ROOT = Path(__file__).resolve().parents[2]
TEXT = "Summarise the quarterly report in three bullet points. " * 18
_EMULATOR = """
import asyncio, json
from keyguard.emulator import EmulatorConfig, start_emulator
async def main():
    emulator = await start_emulator(EmulatorConfig(), port=0)
    print(json.dumps({"url": emulator.url, "key": emulator.keys()[0]}), flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def _sdk(url: str, key: str) -> None:
    async with ContentSafetyClient(url, AzureKeyCredential(key)) as client:
        for _ in range(N):
            await client.analyze_text(AnalyzeTextOptions(text=TEXT))


async def _rest(url: str, key: str) -> None:
    target = f"{url}/contentsafety/text:analyze?api-version=2024-09-01"
    headers = {"Ocp-Apim-Subscription-Key": key, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        for _ in range(N):
            async with http.post(target, data=orjson.dumps({"text": TEXT}), headers=headers) as r:
                orjson.loads(await r.read())


def main() -> None:
    emulator = subprocess.Popen(
        [str(ROOT / ".venv/bin/python"), "-c", _EMULATOR], stdout=subprocess.PIPE, text=True
    )
    try:
        assert emulator.stdout is not None
        started = json.loads(emulator.stdout.readline())
        for name, run in (("sdk", _sdk), ("rest", _rest)):
            cpu, wall = [], []
            for _ in range(5):
                c0, w0 = time.process_time(), time.perf_counter()
                asyncio.run(run(started["url"], started["key"]))
                cpu.append((time.process_time() - c0) / N * 1e6)
                wall.append((time.perf_counter() - w0) / N * 1e6)
            print(
                json.dumps(
                    {
                        "client": name,
                        "n": N,
                        "cpu_us_per_call": round(statistics.median(cpu)),
                        "wall_us_per_call": round(statistics.median(wall)),
                    }
                ),
                flush=True,
            )
    finally:
        emulator.terminate()
        emulator.wait()


if __name__ == "__main__":
    main()
