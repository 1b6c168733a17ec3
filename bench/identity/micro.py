"""What Entra ID tokens and the policy add per request, measured in process (no network).

    .venv/bin/python bench/identity/micro.py            # ~10 s; prints one JSON line per case

Cases (each the median of 7 runs of N calls, in microseconds per call):

* ``entra_cached``      an already-validated token: SHA-256 of the token + cache lookup
                        (what every request after the first pays);
* ``entra_full``        a token seen for the first time: header, RS256 signature, claims
                        (paid once per token, i.e. about once an hour per app instance);
* ``policy_allow``      facts from the request context + evaluation, allowed, for a policy
                        of 200 bindings with caps, a prompt limit and source networks;
* ``policy_deny``       the same, denied (includes building the 403);
* ``client_address``    X-Forwarded-For through one trusted proxy;
* ``hot_path_total``    entra_cached + policy_allow + client_address: the budget is 100 us.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from keyguard.core.netaddr import client_address
from keyguard.core.principal import Principal
from keyguard.core.request import RequestContext
from keyguard.errors import PermissionDenied
from keyguard.identity.entra import EntraAuthenticator
from keyguard.identity.jwk import SigningKey, read_key_set
from keyguard.identity.settings import EntraSettings
from keyguard.identity.tokens import TokenValidator
from keyguard.policy.authorizer import PolicyAuthorizer
from keyguard.policy.compiled import compile_policy
from keyguard.policy.document import parse_document
from keyguard.proxy.routes import parse_route

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
APP = "11111111-1111-1111-1111-111111111111"


def per_call(fn: Callable[[], object], n: int) -> float:
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def policy_document() -> dict[str, Any]:
    roles = {
        f"r{i}": {
            "operations": ["chat", "embeddings"],
            "deployments": [f"dep-{i}-*", "gpt-4o-mini"],
            "max_output_tokens": 4096,
            "max_prompt_chars": 200_000,
            "source_networks": ["10.0.0.0/8", "192.168.0.0/16"],
        }
        for i in range(50)
    }
    bindings = [
        {"name": f"b{i}", "role": f"r{i % 50}", "subjects": [f"app:app{i}"]} for i in range(199)
    ]
    bindings.append({"name": "billing", "role": "r7", "subjects": ["app:billing"]})
    return {"apps": {"billing": {"entra_client_ids": [APP]}}, "roles": roles, "bindings": bindings}


def context(max_tokens: int) -> RequestContext:
    ctx = RequestContext("id", 0.0, "POST", "10.1.2.3", None)
    ctx.route = parse_route(
        "POST", "/openai/deployments/gpt-4o-mini/chat/completions", "api-version=2024-10-21"
    )
    ctx.deployment = "gpt-4o-mini"
    ctx.payload = {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. " * 10},
            {"role": "user", "content": "Summarise the quarterly report in three bullet points."},
        ],
        "max_tokens": max_tokens,
    }
    ctx.principal = Principal("app", "app:billing", "billing", tenant=TENANT)
    return ctx


async def main() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = read_key_set(
        [{**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1"}], ["RS256"]
    ).keys["k1"]
    settings = EntraSettings(tenants=[TENANT], audiences=["api://keyguard"])
    now = int(time.time())
    claims = {
        "aud": "api://keyguard",
        "iss": f"https://sts.windows.net/{TENANT}/",
        "tid": TENANT,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "appid": APP,
        "oid": str(uuid.uuid4()),
        "idtyp": "app",
        "ver": "1.0",
        "roles": ["Chat"],
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})

    async def lookup(kid: str) -> SigningKey | None:
        return jwk if kid == "k1" else None

    validator = TokenValidator(settings, lookup)
    policy = compile_policy(parse_document(policy_document()))
    entra = EntraAuthenticator(
        validator, directory=lambda: policy.directory, generation=lambda: 1, skew=60
    )
    await entra.authenticate(token)  # warm the cache
    results: dict[str, float] = {}

    async def cached_many(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await entra.authenticate(token)
        return (time.perf_counter() - start) / n * 1e6

    results["entra_cached"] = statistics.median([await cached_many(50_000) for _ in range(7)])

    async def full_many(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await validator.validate(token, time.time())
        return (time.perf_counter() - start) / n * 1e6

    results["entra_full"] = statistics.median([await full_many(300) for _ in range(7)])
    authorizer = PolicyAuthorizer(lambda: policy)
    allow_ctx, deny_ctx = context(100), context(10_000)
    stamp = datetime.now(UTC)
    results["policy_allow"] = per_call(lambda: authorizer.authorize(allow_ctx, stamp), 50_000)

    def deny() -> None:
        try:
            authorizer.authorize(deny_ctx, stamp)
        except PermissionDenied:
            pass

    results["policy_deny"] = per_call(deny, 50_000)
    trusted = (ipaddress.ip_network("10.0.0.0/8"),)
    results["client_address"] = per_call(
        lambda: client_address("10.0.0.5", ["203.0.113.7"], trusted), 50_000
    )
    results["hot_path_total"] = (
        results["entra_cached"] + results["policy_allow"] + results["client_address"]
    )
    for case, micros in results.items():
        print(json.dumps({"case": case, "us_per_call": round(micros, 2)}))


if __name__ == "__main__":
    asyncio.run(main())
