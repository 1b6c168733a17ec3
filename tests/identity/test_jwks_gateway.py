"""End to end with the emulator's JWKS: hostile key sets never stop the gateway or reach a
verification. Bad entries are skipped (the good keys stay), weak keys are dropped with a
warning, and a gateway whose JWKS is broken or unreachable at start-up starts anyway, says so
in one log line, and answers Entra callers 503 until the keys can be fetched."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from keyguard.emulator import RunningEmulator
from keyguard.server import Gateway

from .forge import (
    ADMIN_GROUP,
    ServedSigner,
    call_admin,
    call_proxy,
    install_signer,
    start_gateway,
)


def rsa_entry(key: rsa.RSAPrivateKey, **fields: Any) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), **fields}


def bad_entries(good: dict[str, Any]) -> list[Any]:
    """JWKS entries a careless or hostile issuer could serve (none of them usable)."""
    return [
        {**good, "kid": "alg-list", "alg": ["RS256"]},
        {**good, "kid": "alg-number", "alg": 256},
        {**good, "kid": ["kid-list"]},
        {**good, "kid": "use-list", "use": ["sig"]},
        {**good, "kid": "use-enc", "use": "enc"},
        {**good, "kid": "n-number", "n": 12345},
        {**good, "kid": "e-list", "e": ["AQAB"]},
        {**good, "kid": "n-not-base64", "n": "***"},
        {**good, "kid": "kty-list", "kty": ["RSA"]},
        {"kid": "no-kty", "n": good["n"], "e": good["e"]},
        {"kty": "RSA", "kid": "no-n", "e": good["e"]},
        {**good, "kid": "private", "d": good["n"]},
        {**good, "kid": "key-ops", "key_ops": "verify"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "EC", "kid": "ec-no-xy", "crv": "P-256"},
        "a string",
        17,
        None,
        [good],
    ]


@dataclass
class Harness:
    gateway: Gateway
    key: str  # a Keyguard key of bound-app

    async def call(self, credential: str, header: str = "Authorization") -> tuple[int, Any]:
        return await call_proxy(self.gateway, credential, header)

    async def admin(self, token: str) -> tuple[int, Any]:
        return await call_admin(self.gateway, token)


Launch = Callable[..., Awaitable[Harness]]


@pytest.fixture
def signer(idp: RunningEmulator) -> ServedSigner:
    return install_signer(idp)


@pytest.fixture
async def launch(
    tmp_path: Path, upstream: RunningEmulator, idp: RunningEmulator
) -> AsyncIterator[Launch]:
    """Start the gateway (once per test) with these ``access.entra`` settings; stopped after."""
    started: list[Gateway] = []

    async def start(**entra: Any) -> Harness:
        gateway, key = await start_gateway(
            tmp_path, upstream, idp, jwks_refresh_min_interval_s=0, **entra
        )
        started.append(gateway)
        return Harness(gateway, key)

    try:
        yield start
    finally:
        for gateway in started:
            await gateway.stop()


@pytest.fixture
async def harness(launch: Launch, signer: ServedSigner) -> Harness:
    signer.extra = bad_entries(signer.jwks()["keys"][0])
    return await launch(algorithms=["RS256", "ES256"])


async def test_bad_entries_are_skipped_and_the_good_key_kept(
    harness: Harness, signer: ServedSigner
) -> None:
    s = signer
    assert (await harness.call(s.forge()))[0] == 200
    for entry in s.extra:
        kid = entry.get("kid") if isinstance(entry, dict) else None
        if isinstance(kid, str):
            status, body = await harness.call(s.forge(s.header(kid=kid)))
            assert status == 401, (kid, body)  # each unknown kid refetched: still no 500
    s.replace = {"keys": bad_entries(s.jwks()["keys"][-1])}  # a refresh with nothing usable
    assert (await harness.call(s.forge(s.header(kid="rotated"))))[0] == 401
    assert (await harness.call(s.forge()))[0] == 200  # the keys already known stay


async def test_weak_and_off_curve_keys_are_dropped_with_a_warning(
    launch: Launch, signer: ServedSigner, caplog: pytest.LogCaptureFixture
) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    k1 = ec.generate_private_key(ec.SECP256K1())
    signer.extra = [
        rsa_entry(weak, kid="weak-1024", alg="RS256", use="sig"),
        {**ECAlgorithm.to_jwk(k1.public_key(), as_dict=True), "kid": "k1", "alg": "ES256"},
    ]
    caplog.set_level(logging.WARNING, logger="keyguard.identity")
    h = await launch(algorithms=["RS256", "ES256"])
    status, body = await h.call(signer.forge(signer.header(kid="weak-1024"), key=weak))
    assert status == 401, body  # a weak key never verifies anything
    assert (await h.call(signer.forge()))[0] == 200
    warnings = " ".join(r.getMessage() for r in caplog.records if r.name == "keyguard.identity")
    assert "weak-1024" in warnings and "1024 bits" in warnings
    assert "'k1'" in warnings and "secp256k1" in warnings


async def test_start_up_with_a_broken_jwks_then_recovery(
    launch: Launch, signer: ServedSigner, caplog: pytest.LogCaptureFixture
) -> None:
    signer.replace = {"keys": [{**signer.jwks()["keys"][0], "alg": ["RS256"]}]}
    caplog.set_level(logging.INFO, logger="keyguard.identity")
    h = await launch()  # starts: a failure is not fatal
    lines = [r for r in caplog.records if r.name == "keyguard.identity"]
    assert len([r for r in lines if r.levelno >= logging.WARNING]) == 1, lines
    status, body = await h.call(signer.forge())
    assert status == 503
    assert body["error"]["code"] == "ServiceUnavailable"
    assert "signing keys" in body["error"]["message"]
    admin_token = signer.forge(None, signer.claims(groups=[ADMIN_GROUP]))
    status, body = await h.admin(admin_token)
    assert status == 503 and body["error"]["code"] == "ServiceUnavailable"
    assert (await h.call(h.key, header="api-key"))[0] == 200  # Keyguard keys work
    signer.replace = None  # the issuer is fixed: the next Entra call fetches again
    assert (await h.call(signer.forge()))[0] == 200
    assert (await h.admin(admin_token))[0] == 200


async def test_start_up_with_an_unreachable_jwks(launch: Launch, signer: ServedSigner) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    h = await launch(jwks_uri=f"https://127.0.0.1:{port}/keys", jwks_timeout_s=2)
    status, body = await h.call(signer.forge())
    assert status == 503 and body["error"]["code"] == "ServiceUnavailable"
