"""CPU per request of the monitor alone (audit, metrics, detection), in process, no HTTP.

    .venv/bin/python bench/monitor/cost.py                 # everything on (the default)
    .venv/bin/python bench/monitor/cost.py --off audit     # one part off: audit|metrics|detect
    .venv/bin/python bench/monitor/cost.py --profile       # plus the top functions (cProfile)

Builds the monitor exactly as ``keyguard serve`` does (``start_monitor``: SQLite store with the
hash-chained audit, Prometheus metrics, every detection rule), records ``--requests`` finished
request contexts shaped like bench/run's traffic (one app key, a few client addresses, the
~1 KB chat body, a 200 with usage), and measures the process CPU time (all threads: the audit's
SQLite writes run in a worker thread) until all of them are processed and written. Compare the
figure with the gateway's CPU per request in bench/run (``keyguard`` against ``keyguard_core``).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import uvloop

from keyguard.config import settings_from_mapping
from keyguard.core.principal import Principal
from keyguard.core.request import RequestContext, Usage
from keyguard.proxy.routes import parse_route
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.monitor import start_monitor
from keyguard.wiring.runtime import open_runtime

ROUTE = parse_route("POST", "/openai/deployments/gpt-4o/chat/completions", "api-version=2024-10-21")
PAYLOAD = {
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Summarise the quarterly report in two sentences. " * 12},
    ],
    "max_tokens": 256,
    "stream": False,
}
UA = "AzureOpenAI/Python 1.109.1"
CLIENT = "Python/1.109.1/Linux/x64/CPython/3.11.7"


def context(i: int, principal: Principal) -> RequestContext:
    ctx = RequestContext(
        request_id=f"{i:016x}",
        started=time.perf_counter() - 0.0004,
        method="POST",
        remote=f"10.0.{i % 4}.{i % 200 + 1}",
        user_agent=UA,
        client=CLIENT,
        presented_key_id=principal.key_id,
    )
    ctx.route = ROUTE
    ctx.principal = principal
    ctx.deployment = "gpt-4o"
    ctx.payload = PAYLOAD
    ctx.status = ctx.upstream_status = 200
    ctx.upstream_ms = 0.3
    ctx.usage = Usage(prompt_tokens=180, completion_tokens=42)
    return ctx


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=150, help="recorded between two passes")
    parser.add_argument(
        "--off", action="append", default=[], choices=["audit", "metrics", "detect"]
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        master = Path(tmp, "master.key")
        create_master_key_file(master)
        monitor_cfg = {part: {"enabled": False} for part in args.off}
        settings = settings_from_mapping(
            {
                "store": f"sqlite:///{tmp}/keyguard.db",
                "master_key_file": str(master),
                "upstreams": [
                    {
                        "name": "mock",
                        "endpoint": "http://127.0.0.1:1",
                        "credential": {"vault": "upstream/mock"},
                        "deployments": ["gpt-4o"],
                    }
                ],
                "monitor": {
                    **monitor_cfg,
                    "respond": {"policy": {"velocity": {"high": ["alert"]}}},
                },
            }
        )
        rt = await open_runtime(settings, {})
        stack = AsyncExitStack()
        monitoring = await start_monitor(stack, rt)
        monitor = monitoring.recorder
        principal = Principal(kind="key", id="key:bench0001", app="bench", key_id="bench0001")
        contexts = [context(i, principal) for i in range(args.requests)]
        profiler = cProfile.Profile() if args.profile else None
        cpu0 = time.process_time()
        if profiler:
            profiler.enable()
        for start in range(0, len(contexts), args.batch):
            for ctx in contexts[start : start + args.batch]:
                monitor.record(ctx)
            await monitor.process()
        await monitor.drain()
        if profiler:
            profiler.disable()
        cpu = time.process_time() - cpu0
        written = monitor.audit.written if monitor.audit is not None else 0
        print(
            f"monitor ({'all on' if not args.off else 'off: ' + ', '.join(args.off)}): "
            f"{args.requests} requests, {written} audit records written, "
            f"{cpu / args.requests * 1e6:.1f} us CPU per request"
        )
        await stack.aclose()
        await rt.close()
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    uvloop.run(main())
