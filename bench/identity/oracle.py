"""Is an unknown key id told apart from a known id with a wrong secret by its timing?

    .venv/bin/python bench/identity/oracle.py [--samples 4000]     # ~30 s

Starts the emulator and a gateway (embedded defaults) on loopback and sends, over one
keep-alive connection, interleaved requests with three kinds of bad credential: a made-up key
(an id that does not exist), a real key id with a wrong secret, and, as the control, the same
made-up key again (all cached after their first use, as in an attack that repeats them). It
prints the median answer time of each with a bootstrap 95 % confidence interval, and the
difference of the medians with its interval: an interval that contains 0 means no difference
was measured. Then a flood of fresh made-up ids, each new: the store lookups it caused
(bounded by ``proxy.unknown_key_lookups_per_s``) and the median answer time.

One JSON line per figure; the last line is a verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from keyguard.config import settings_from_mapping
from keyguard.emulator import EmulatorConfig, start_emulator
from keyguard.keys.format import generate_key
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.runtime import open_runtime

PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
BODY = b'{"messages":[{"role":"user","content":"hi"}],"max_tokens":1}'


def request(key: str) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: bench\r\napi-key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


async def timed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> float:
    start = time.perf_counter()
    writer.write(request(key))
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    assert head.startswith(b"HTTP/1.1 401"), head[:40]
    return (time.perf_counter() - start) * 1e6


def interval(values: list[float], rounds: int = 1000) -> tuple[float, float]:
    rng = random.Random(7)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(rounds * 0.025)], medians[int(rounds * 0.975)]


def difference(a: list[float], b: list[float], rounds: int = 1000) -> tuple[float, float, float]:
    rng = random.Random(11)
    diffs = sorted(
        statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b)))
        for _ in range(rounds)
    )
    return statistics.median(a) - statistics.median(b), diffs[25], diffs[975]


async def main(samples: int) -> None:
    emulator = await start_emulator(EmulatorConfig())
    tmp = Path(tempfile.mkdtemp(prefix="keyguard-oracle-"))
    create_master_key_file(tmp / "master.key")
    settings = settings_from_mapping(
        {
            "listen": {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0"},
            "store": f"sqlite:///{tmp / 'k.db'}",
            "master_key_file": str(tmp / "master.key"),
            "proxy": {"access_log": False},
            "monitor": {"audit": {"enabled": False}, "detect": {"enabled": False}},
            "upstreams": [
                {
                    "name": "emulator",
                    "endpoint": emulator.url,
                    "credential": {"vault": "upstream/emulator"},
                    "deployments": ["gpt-4o"],
                }
            ],
        }
    )
    rt = await open_runtime(settings, {})
    await rt.vault.put("upstream/emulator", emulator.keys()[0])
    record, _ = await rt.keys.create("bench", now=datetime.now(UTC))
    await rt.close()
    gateway = Gateway(settings, {})
    await gateway.start()
    try:
        host, port = gateway.proxy_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        unknown = generate_key().full
        wrong = generate_key(record.key_id).full
        other_unknown = generate_key().full
        kinds = {"unknown_id": unknown, "wrong_secret": wrong, "unknown_id_control": other_unknown}
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for key in kinds.values():  # warm the caches
            await timed(reader, writer, key)
        order = list(kinds)
        for _ in range(samples):
            random.shuffle(order)
            for kind in order:
                times[kind].append(await timed(reader, writer, kinds[kind]))
        for kind, values in times.items():
            low, high = interval(values)
            median = round(statistics.median(values), 1)
            ci95 = [round(low, 1), round(high, 1)]
            print(json.dumps({"case": kind, "median_us": median, "ci95": ci95, "n": len(values)}))
        for a, b in (("unknown_id", "wrong_secret"), ("unknown_id", "unknown_id_control")):
            diff, low, high = difference(times[a], times[b])
            print(json.dumps({"case": f"{a} - {b}", "median_diff_us": round(diff, 2),
                              "ci95": [round(low, 2), round(high, 2)]}))  # fmt: skip
        auth = gateway.authenticator
        assert auth is not None and auth._index is not None
        skipped_before = auth._index.skipped
        flood: list[float] = []
        for _ in range(2000):
            flood.append(await timed(reader, writer, generate_key().full))
        skipped = auth._index.skipped - skipped_before
        print(json.dumps({"case": "flood_of_fresh_ids", "requests": 2000,
                          "store_lookups": 2000 - skipped,
                          "median_us": round(statistics.median(flood), 1)}))  # fmt: skip
        diff, low, high = difference(times["unknown_id"], times["wrong_secret"])
        print(json.dumps({"verdict": "no difference measured" if low <= 0 <= high
                          else "a difference was measured"}))  # fmt: skip
        writer.close()
    finally:
        await gateway.stop()
        await emulator.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    asyncio.run(main(parser.parse_args().samples))
