"""Small-request latency while 100,000-token prompts arrive (limits on: every prompt is counted).

Runs against a started Keyguard (``--base-url``, ``--key``) whose upstream answers anything
(bench/limits/latency starts the nginx fake Azure OpenAI and the gateway). Three phases of
``--requests`` small chat requests, one at a time:

* ``quiet``   nothing else happens;
* ``large``   meanwhile ``--senders`` tasks each send a ~100,000-token prompt back to back.

Prints one JSON line per phase (p50/p90/p99/max milliseconds of the small requests, how many
large prompts were sent and their size in tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import aiohttp

ROUTE = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
SMALL = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def large_body(tokens: int) -> tuple[dict[str, Any], int]:
    from keyguard.limits.tokenizer import load_encoding

    enc = load_encoding("o200k_base")
    words = ["alpha", "river", "quota", "signal", "lantern", "harbor", "meadow", "vector"]
    text = " ".join(words[i % len(words)] + str(i % 97) for i in range(tokens // 2))
    counted = len(enc.encode_ordinary(text))
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 16}
    return body, counted


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "max_ms": round(ordered[-1], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


async def small_loop(http: aiohttp.ClientSession, url: str, key: str, n: int) -> list[float]:
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with http.post(url, json=SMALL, headers={"api-key": key}) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def large_sender(
    http: aiohttp.ClientSession, url: str, key: str, body: bytes, stop: asyncio.Event
) -> int:
    sent = 0
    headers = {"api-key": key, "content-type": "application/json"}
    while not stop.is_set():
        async with http.post(url, data=body, headers=headers) as resp:
            await resp.read()
        sent += 1
    return sent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--label", default="keyguard")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=100_000)
    args = parser.parse_args()
    url = args.base_url + ROUTE
    payload, counted = large_body(args.tokens)
    body = json.dumps(payload).encode()
    async with aiohttp.ClientSession() as http:
        await small_loop(http, url, args.key, 20)  # warm-up
        quiet = await small_loop(http, url, args.key, args.requests)
        print(json.dumps({"label": args.label, "phase": "quiet", **percentiles(quiet)}))
        stop = asyncio.Event()
        senders = [
            asyncio.create_task(large_sender(http, url, args.key, body, stop))
            for _ in range(args.senders)
        ]
        t0 = time.perf_counter()
        loaded = await small_loop(http, url, args.key, args.requests)
        elapsed = time.perf_counter() - t0
        stop.set()
        sent = sum(await asyncio.gather(*senders))
        print(
            json.dumps(
                {
                    "label": args.label,
                    "phase": "large",
                    **percentiles(loaded),
                    "large_prompts": sent,
                    "large_prompt_tokens": counted,
                    "large_prompt_bytes": len(body),
                    "large_per_s": round(sent / elapsed, 2),
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
