"""What one open connection costs the gateway in memory, and how long a flood of half-open
connections holds it.

    .venv/bin/python bench/connections/memory.py [--connections 2000]     # ~30 s

Starts the emulator and a gateway (embedded defaults, ``header_timeout_s: 5``) on loopback,
in this process, and measures the process's resident memory (``/proc/self/status``) before
and while ``--connections`` client sockets (plain sockets, a few hundred bytes of Python
each, from 127.0.0.2 ... so no address reaches its cap) each hold a connection that has sent
half a header line; then how long the gateway takes to close them all. One JSON line per
figure.
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

from keyguard.config import settings_from_mapping
from keyguard.emulator import EmulatorConfig, start_emulator
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.runtime import open_runtime

HALF = b"POST /openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21 HTTP/1.1\r\nHo"
PER_ADDRESS = 500


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def main(count: int) -> None:
    emulator = await start_emulator(EmulatorConfig())
    tmp = Path(tempfile.mkdtemp(prefix="keyguard-conn-memory-"))
    create_master_key_file(tmp / "master.key")
    settings = settings_from_mapping(
        {
            "listen": {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0"},
            "store": f"sqlite:///{tmp / 'k.db'}",
            "master_key_file": str(tmp / "master.key"),
            "proxy": {"header_timeout_s": 5, "access_log": False},
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
    await rt.close()
    gateway = Gateway(settings, {})
    await gateway.start()
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
        await emulator.stop()
    print(json.dumps({"connections": count, "rss_before_mib": round(before / 1024, 1),
                      "rss_held_mib": round(held / 1024, 1)}))  # fmt: skip
    print(json.dumps({"kib_per_connection": round((held - before) / count, 1)}))
    print(json.dumps({"all_closed_after_s": round(closed_in, 2), "header_timeout_s": 5,
                      "header_timeouts": guard.header_timeouts}))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    asyncio.run(main(parser.parse_args().connections))
