"""What the guardrails' hold-back window adds to a streamed answer, through the official SDK.

    .venv/bin/python bench/guardrails/holdback.py            # windows 64, 128, 256; 20 ms/chunk
    .venv/bin/python bench/guardrails/holdback.py --delay 0.01 --streams 10 --windows 128

Starts the emulator with a paced stream (one chunk every ``--delay`` seconds, as a model
streams tokens) and, for the guardrails off and each window, a gateway in front of it (the
default configuration otherwise: SQLite store, monitoring on), then runs ``--streams`` chat
streams per configuration and reports the median time to the first content chunk and to the
end of the stream, and the chunks the client received. The hold-back delays the first text by
about the time the upstream takes to produce ``window`` characters; the end of the stream
(and so the total time) is unchanged.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import uvloop

from keyguard.config import settings_from_mapping
from keyguard.emulator import EmulatorConfig, start_emulator
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.runtime import open_runtime

API_VERSION = "2024-10-21"


async def one_stream(client: openai.AsyncAzureOpenAI) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = 0.0
    chunks = 0
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Tell me about the quarterly report."}],
        stream=True,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            chunks += 1
            if not first:
                first = time.perf_counter() - start
    return first, time.perf_counter() - start, chunks


async def measure(emulator_url: str, key1: str, guard: dict[str, Any], streams: int) -> list[Any]:
    with tempfile.TemporaryDirectory() as tmp:
        master = Path(tmp) / "master.key"
        create_master_key_file(master)
        settings = settings_from_mapping(
            {
                "listen": {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0"},
                "store": f"sqlite:///{tmp}/keyguard.db",
                "master_key_file": str(master),
                "upstreams": [
                    {
                        "name": "emulator",
                        "endpoint": emulator_url,
                        "credential": {"vault": "upstream/emulator"},
                        "deployments": ["gpt-4o"],
                    }
                ],
                "guardrails": guard,
            }
        )
        runtime = await open_runtime(settings, {})
        try:
            await runtime.vault.put("upstream/emulator", key1)
        finally:
            await runtime.close()
        gateway = Gateway(settings, {})
        await gateway.start()
        try:
            assert gateway.runtime is not None
            _, key = await gateway.runtime.keys.create("bench", now=datetime.now(UTC))
            client = openai.AsyncAzureOpenAI(
                azure_endpoint=gateway.proxy_url, api_key=key, api_version=API_VERSION
            )
            async with client:
                await one_stream(client)  # warm-up
                return [await one_stream(client) for _ in range(streams)]
        finally:
            await gateway.stop()


async def main(args: argparse.Namespace) -> None:
    config = EmulatorConfig(stream_delay=args.delay, default_completion_tokens=args.tokens)
    emulator = await start_emulator(config)
    try:
        key1 = emulator.keys()[0]
        runs: list[tuple[str, dict[str, Any]]] = [("guardrails off", {"enabled": False})]
        runs += [(f"window {w}", {"stream_window_chars": w}) for w in args.windows]
        print(f"{args.tokens} chunks, one every {args.delay * 1000:.0f} ms, {args.streams} streams")
        print("| configuration | first text, median ms | whole stream, median ms | chunks |")
        print("|---|---:|---:|---:|")
        for label, guard in runs:
            results = await measure(emulator.url, key1, guard, args.streams)
            first = statistics.median(r[0] for r in results) * 1000
            whole = statistics.median(r[1] for r in results) * 1000
            chunks = statistics.median(r[2] for r in results)
            print(f"| {label} | {first:.0f} | {whole:.0f} | {chunks:.0f} |")
    finally:
        await emulator.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.02)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--streams", type=int, default=5)
    ap.add_argument("--windows", type=int, nargs="+", default=[64, 128, 256])
    uvloop.run(main(ap.parse_args()))
