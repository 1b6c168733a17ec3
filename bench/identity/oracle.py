"""Is an unknown credential id told apart from a known id with a wrong secret by its timing?

    .venv/bin/python bench/identity/oracle.py [--samples 4000]                # ~30 s
    .venv/bin/python bench/identity/oracle.py --port admin [--samples 4000]   # admin tokens

Starts the emulator and a gateway (embedded defaults) on loopback and sends, over one
keep-alive connection, interleaved requests with three kinds of bad credential: a made-up
credential (an id that does not exist), a real id with a wrong secret, and, as the control,
another made-up credential (all cached after their first use, as in an attack that repeats
them). On the proxy port (``--port proxy``, the default) the credential is a Keyguard key in
``api-key`` on a chat request; on the admin port (``--port admin``) an admin token in
``Authorization: Bearer`` on ``GET /admin/keys``. It prints the median answer time of each with
a bootstrap 95 % confidence interval, and the difference of the medians with its interval: an
interval that contains 0 means no difference was measured. Then a flood of fresh made-up ids,
each new: the store reads of one record it caused (counted at the database driver, bounded by
``proxy.unknown_key_lookups_per_s``) and the median answer time.

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

from sqlalchemy import event

from keyguard.cli.support import cli_actor
from keyguard.config import settings_from_mapping
from keyguard.emulator import EmulatorConfig, start_emulator
from keyguard.keys.admin_tokens import TOKEN_PREFIX, _checksum, generate_token
from keyguard.keys.format import generate_key
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.access import open_admin_service
from keyguard.wiring.runtime import open_runtime

PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
BODY = b'{"messages":[{"role":"user","content":"hi"}],"max_tokens":1}'
# the record reads, by id, of each port's credential
READS = {"proxy": "WHERE keys.key_id =", "admin": "WHERE admin_tokens.token_id ="}


def request(port: str, credential: str) -> bytes:
    if port == "admin":
        return (
            f"GET /admin/keys HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {credential}\r\n\r\n"
        ).encode()
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: bench\r\napi-key: {credential}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


def made_up(port: str) -> str:
    return generate_token()[1] if port == "admin" else generate_key().full


def with_wrong_secret(port: str, real_id: str) -> str:
    if port == "admin":
        body = TOKEN_PREFIX + real_id + generate_token()[1][16:48]
        return body + _checksum(body)
    return generate_key(real_id).full


async def timed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: str, key: str
) -> float:
    start = time.perf_counter()
    writer.write(request(port, key))
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


async def main(samples: int, port: str) -> None:
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
    if port == "admin":
        service = await open_admin_service(rt)
        token, _ = await service.create_admin_token(cli_actor(), name="bench", role="viewer")
        real_id = token.token_id
    else:
        real_id = (await rt.keys.create("bench", now=datetime.now(UTC)))[0].key_id
    await rt.close()
    gateway = Gateway(settings, {})
    await gateway.start()
    assert gateway.runtime is not None and gateway.runtime.engine is not None
    reads: list[str] = []

    def executed(conn: object, cursor: object, statement: str, *args: object) -> None:
        if READS[port] in statement:
            reads.append(statement)

    event.listen(gateway.runtime.engine.sync_engine, "before_cursor_execute", executed)
    try:
        url = gateway.admin_url if port == "admin" else gateway.proxy_url
        host, tcp_port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(tcp_port))
        kinds = {
            "unknown_id": made_up(port),
            "wrong_secret": with_wrong_secret(port, real_id),
            "unknown_id_control": made_up(port),
        }
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for key in kinds.values():  # warm the caches
            await timed(reader, writer, port, key)
        reads.clear()
        order = list(kinds)
        for _ in range(samples):
            random.shuffle(order)
            for kind in order:
                times[kind].append(await timed(reader, writer, port, kinds[kind]))
        print(json.dumps({"port": port, "record_reads_while_timed": len(reads)}))
        for kind, values in times.items():
            low, high = interval(values)
            median = round(statistics.median(values), 1)
            ci95 = [round(low, 1), round(high, 1)]
            print(json.dumps({"case": kind, "median_us": median, "ci95": ci95, "n": len(values)}))
        for a, b in (("unknown_id", "wrong_secret"), ("unknown_id", "unknown_id_control")):
            diff, low, high = difference(times[a], times[b])
            print(json.dumps({"case": f"{a} - {b}", "median_diff_us": round(diff, 2),
                              "ci95": [round(low, 2), round(high, 2)]}))  # fmt: skip
        reads.clear()
        flood: list[float] = []
        flood_start = time.perf_counter()
        for _ in range(2000):
            flood.append(await timed(reader, writer, port, made_up(port)))
        print(json.dumps({"case": "flood_of_fresh_ids", "requests": 2000,
                          "seconds": round(time.perf_counter() - flood_start, 2),
                          "store_lookups": len(reads),
                          "median_us": round(statistics.median(flood), 1)}))  # fmt: skip
        diff, low, high = difference(times["unknown_id"], times["wrong_secret"])
        print(json.dumps({"verdict": "no difference measured" if low <= 0 <= high
                          else "a difference was measured"}))  # fmt: skip
        writer.close()
    finally:
        event.remove(gateway.runtime.engine.sync_engine, "before_cursor_execute", executed)
        await gateway.stop()
        await emulator.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--port", choices=("proxy", "admin"), default="proxy")
    args = parser.parse_args()
    asyncio.run(main(args.samples, args.port))
