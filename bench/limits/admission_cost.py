"""CPU per request of the limits hook alone (admit + settle), in process, no HTTP.

    .venv/bin/python bench/limits/admission_cost.py                # in-process backend
    .venv/bin/python bench/limits/admission_cost.py --redis redis://127.0.0.1:6379/15

The request is bench/run's ~1 KB chat body, limits at key, app and deployment scope (as in
bench/limits/run). Compare the figure with the gateway's CPU per request (bench/run's
``CPU ms/req``): it is what limits add to every request. Also prints the uncached cost of
tokenising the same prompt (the first time a text is seen).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import uvloop

from keyguard.core.principal import Principal
from keyguard.core.request import RequestContext, Usage
from keyguard.limits.admission import LimitAdmission
from keyguard.limits.backend import Backend, MemoryBackend
from keyguard.limits.estimator import Estimator
from keyguard.limits.redis_backend import RedisBackend
from keyguard.limits.rules import Rules
from keyguard.limits.settings import LimitSettings
from keyguard.limits.tokenizer import Tokenizer
from keyguard.proxy.routes import parse_route

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from chat_body import MESSAGES, SYSTEM, USER  # noqa: E402

RULES = {
    "rules": [
        {"scope": "key", "tpm": 10**12, "rpm": 10**12},
        {"scope": "app", "tpm": 10**12, "concurrent": 10**6},
        {"scope": "deployment", "tpm": 10**12, "tokens_per_day": 10**14},
    ]
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", help="a Redis URL (default: the in-process backend)")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    tokenizer = Tokenizer()
    tokenizer.load(["gpt-4o"])
    backend: Backend = MemoryBackend()
    if args.redis:
        backend = RedisBackend(args.redis, prefix="kgbench:{limits}:", timeout_s=2, lease_s=60)
    admission = LimitAdmission(
        rules=Rules(LimitSettings.model_validate(RULES)),
        estimator=Estimator(
            tokenizer, default_max_tokens=4096, inject_max_tokens=True, large_prompt_chars=16384
        ),
        backend=backend,
        models={},
        prices={},
    )
    await admission.start()
    route = parse_route(
        "POST", "/openai/deployments/gpt-4o/chat/completions", "api-version=2024-10-21"
    )
    principal = Principal("key", "key:k1", "bench", "k1")

    async def one(i: int) -> None:
        ctx = RequestContext(f"r{i}", 0.0, "POST", None, None)
        ctx.route, ctx.principal, ctx.deployment = route, principal, "gpt-4o"
        ctx.payload = {
            "messages": MESSAGES,
            "max_tokens": 64,
        }
        held = await admission.admit(ctx)
        ctx.usage, ctx.upstream_status = Usage(231, 24), 200
        await admission.settle(ctx, held)

    async def worker(start: int) -> None:
        for i in range(start, args.requests, args.concurrency):
            await one(i)

    await asyncio.gather(*(worker(k) for k in range(args.concurrency)))  # warm-up
    cpu = time.process_time()
    await asyncio.gather(*(worker(k) for k in range(args.concurrency)))
    per_request = (time.process_time() - cpu) / args.requests * 1e6
    enc = tokenizer.for_model("gpt-4o")
    cpu = time.process_time()
    for _ in range(2000):
        enc.encode_ordinary(SYSTEM)
        enc.encode_ordinary(USER)
    uncached = (time.process_time() - cpu) / 2000 * 1e6
    await admission.close()
    label = "redis" if args.redis else "memory"
    print(f"{label}: {per_request:.1f} us of CPU per request (admit + settle)")
    print(f"tokenising the prompt uncached: {uncached:.0f} us (counts are cached per text)")


if __name__ == "__main__":
    uvloop.run(main())
