"""What one open connection costs the gateway in memory, and how long a flood of half-open
connections holds it.

    .venv/bin/python bench/connections/memory.py [--connections 2000]     # ~20 s

Starts the emulator and a gateway on loopback, in this process, as ``keyguard demo`` does
(the default configuration: a header timeout of 10 s), and measures the process's resident
memory (``/proc/self/status``) before and while ``--connections`` client sockets (plain
sockets, a few hundred bytes of Python each, from 127.0.0.2 ... so no address reaches its
cap) each hold a connection that has sent half a header line; then how long the gateway takes
to close them all. One JSON line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import tempfile
import time
from pathlib import Path

from keyguard.demo import start_demo

HALF = b"POST /openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21 HTTP/1.1\r\nHo"
PER_ADDRESS = 500


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def main(count: int) -> None:
    env = await start_demo(Path(tempfile.mkdtemp(prefix="keyguard-conn-memory-")), port=0,
                           admin_port=0)  # fmt: skip
    gateway = env.gateway
    guard = gateway.proxy_guard
    assert guard is not None
    host, port = gateway.proxy_url.removeprefix("http://").rsplit(":", 1)
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []
    try:
        gc.collect()
        before = rss_kib()
        for i in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind((f"127.0.0.{2 + i // PER_ADDRESS}", 0))
            await loop.sock_connect(sock, (host, int(port)))
            await loop.sock_sendall(sock, HALF)
            socks.append(sock)
        while guard.open < count:
            await asyncio.sleep(0.01)
        gc.collect()
        held = rss_kib()
        began = time.monotonic()
        while guard.open > 0:
            await asyncio.sleep(0.01)
        closed_in = time.monotonic() - began
    finally:
        for sock in socks:
            sock.close()
        await gateway.stop()
        await env.emulator.stop()
    print(json.dumps({"connections": count, "rss_before_mib": round(before / 1024, 1),
                      "rss_held_mib": round(held / 1024, 1)}))  # fmt: skip
    print(json.dumps({"kib_per_connection": round((held - before) / count, 1)}))
    print(json.dumps({"all_closed_after_s": round(closed_in, 2),
                      "header_timeout_s": gateway.settings.proxy.header_timeout_s,
                      "header_timeouts": guard.header_timeouts}))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    asyncio.run(main(parser.parse_args().connections))
