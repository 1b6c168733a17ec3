"""End to end with the emulator's Entra issuer: every malformed header or claim value is a 401
with a documented reason on the proxy port and on the admin API -- never a 500, never a
traceback -- and counts as an authentication failure for detection. Client ids are GUIDs,
never app names; times are finite integers within the maximum lifetime; a JWT belongs in
``Authorization``, never in ``api-key``."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from keyguard.emulator import RunningEmulator
from keyguard.events import Event, SecurityEvent
from keyguard.identity.failures import REASONS
from keyguard.server import Gateway
from tests.support.emulators import API_VERSION

from .forge import (
    ADMIN_GROUP,
    BODY,
    BOUND_CLIENT,
    CHAT,
    UNBOUND_CLIENT,
    ServedSigner,
    call_admin,
    call_proxy,
    guid,
    install_signer,
    start_gateway,
)


def documented_reasons() -> set[str]:
    """The reasons of the table in docs/identity.md's *Entra ID tokens* section."""
    text = (Path(__file__).parents[2] / "docs" / "identity.md").read_text()
    section = text.split("## Entra ID tokens", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (`[a-z_]+`(?: / `[a-z_]+`)*) \|", section, re.M)
    return {name for row in rows for name in re.findall(r"`([a-z_]+)`", row)}


DOCUMENTED = documented_reasons()
NOW = int(time.time())
DEEP = "[" * 2000 + "]" * 2000  # fits the 8 KiB of a header line


def claims_text(signer: ServedSigner, **raw: str) -> str:
    """The good claims with some values replaced by raw JSON text (``NaN``, ``1e400``...)."""
    values = signer.claims(**{name: None for name in raw})
    text = orjson.dumps(values).decode()[:-1]
    return text + "".join(f',"{name}":{value}' for name, value in raw.items()) + "}"


Make = Callable[[ServedSigner], str]
CASES: list[tuple[str, Make, str]] = [
    # the issue's own token: {"alg":["RS256"],"kid":"x"}, no signature worth the name
    (
        "alg-list-unsigned",
        lambda s: "eyJhbGciOlsiUlMyNTYiXSwia2lkIjoieCJ9.eyJ4IjoxfQ.eA",
        "token_malformed",
    ),
    ("alg-list", lambda s: s.forge(s.header(alg=["RS256"])), "token_malformed"),
    ("alg-object", lambda s: s.forge(s.header(alg={"RS256": 1})), "token_malformed"),
    ("alg-number", lambda s: s.forge(s.header(alg=256)), "token_malformed"),
    ("alg-missing", lambda s: s.forge({"kid": s.kid}), "token_malformed"),
    ("kid-list", lambda s: s.forge(s.header(kid=[s.kid])), "token_malformed"),
    ("kid-number", lambda s: s.forge(s.header(kid=1)), "token_malformed"),
    ("typ-list", lambda s: s.forge(s.header(typ=["JWT"])), "token_malformed"),
    ("crit", lambda s: s.forge(s.header(crit=["exp"])), "token_malformed"),
    ("b64-false", lambda s: s.forge(s.header(b64=False)), "token_malformed"),
    ("header-array", lambda s: s.forge('["RS256"]'), "unrecognised_credential"),
    (
        "header-duplicate-alg",
        lambda s: s.forge(f'{{"alg":"RS256","kid":"{s.kid}","alg":"none"}}'),
        "token_malformed",
    ),
    (
        "header-deep",
        lambda s: s.forge(f'{{"alg":"RS256","kid":"{s.kid}","x":{DEEP}}}'),
        "token_malformed",
    ),
    ("claims-array", lambda s: s.forge(None, "[]"), "token_malformed"),
    ("claims-deep", lambda s: s.forge(None, claims_text(s, x=DEEP)), "token_malformed"),
    ("claims-bom", lambda s: s.forge(None, "\ufeff" + claims_text(s)), "token_malformed"),
    ("claims-surrogate", lambda s: s.forge(None, claims_text(s, x='"\\ud800"')), "token_malformed"),
    ("exp-1e308", lambda s: s.forge(None, claims_text(s, exp="1e308")), "token_claims"),
    ("exp-1e400", lambda s: s.forge(None, claims_text(s, exp="1e400")), "token_malformed"),
    ("exp-nan", lambda s: s.forge(None, claims_text(s, exp="NaN")), "token_malformed"),
    ("exp-infinity", lambda s: s.forge(None, claims_text(s, exp="Infinity")), "token_malformed"),
    ("exp-10^400", lambda s: s.forge(None, claims_text(s, exp="1" + "0" * 400)), "token_malformed"),
    ("exp-2^64", lambda s: s.forge(None, claims_text(s, exp=str(2**64))), "token_claims"),
    ("exp-float", lambda s: s.forge(None, s.claims(exp=NOW + 3600.5)), "token_claims"),
    ("exp-true", lambda s: s.forge(None, s.claims(exp=True)), "token_claims"),
    ("exp-string", lambda s: s.forge(None, s.claims(exp=str(NOW + 3600))), "token_claims"),
    ("exp-negative", lambda s: s.forge(None, s.claims(exp=-1)), "token_claims"),
    ("exp-missing", lambda s: s.forge(None, s.claims(exp=None)), "token_claims"),
    ("exp-30-days", lambda s: s.forge(None, s.claims(exp=NOW + 30 * 86400)), "token_lifetime"),
    ("nbf-float", lambda s: s.forge(None, s.claims(nbf=NOW - 0.5)), "token_claims"),
    ("iat-bool", lambda s: s.forge(None, s.claims(iat=False)), "token_claims"),
    ("iat-long-ago", lambda s: s.forge(None, s.claims(iat=NOW - 30 * 86400)), "token_lifetime"),
    (
        "aud-array",
        lambda s: s.forge(None, s.claims(aud=[s.claims()["aud"], "x"])),
        "token_audience",
    ),
    ("aud-number", lambda s: s.forge(None, s.claims(aud=7)), "token_audience"),
    ("iss-list", lambda s: s.forge(None, s.claims(iss=[s.issuer])), "token_issuer"),
    ("tid-list", lambda s: s.forge(None, s.claims(tid=[s.tenant])), "token_issuer"),
    ("appid-app-name", lambda s: s.forge(None, s.claims(appid="bound-app")), "token_claims"),
    ("appid-upper-name", lambda s: s.forge(None, s.claims(appid="BOUND-APP")), "token_claims"),
    ("appid-number", lambda s: s.forge(None, s.claims(appid=12)), "token_claims"),
    ("appid-list", lambda s: s.forge(None, s.claims(appid=[BOUND_CLIENT])), "token_claims"),
    (
        "azp-app-name",
        lambda s: s.forge(None, s.claims(appid=None, azp="bound-app", ver="2.0")),
        "token_claims",
    ),
    (
        "appid-azp-differ",
        lambda s: s.forge(None, s.claims(azp=UNBOUND_CLIENT)),
        "token_claims",
    ),
    (
        "agent-parent-name",
        lambda s: s.forge(None, s.claims(xms_par_app_azp="bound-app")),
        "token_claims",
    ),
    ("oid-list", lambda s: s.forge(None, s.claims(oid=[guid()])), "token_claims"),
    ("oid-name", lambda s: s.forge(None, s.claims(oid="root")), "token_claims"),
    ("ver-number", lambda s: s.forge(None, s.claims(ver=2)), "token_claims"),
    ("roles-object", lambda s: s.forge(None, s.claims(roles={"Chat": 1})), "token_claims"),
    ("roles-numbers", lambda s: s.forge(None, s.claims(roles=[1, 2])), "token_claims"),
    ("groups-string", lambda s: s.forge(None, s.claims(groups=ADMIN_GROUP)), "token_claims"),
    ("idtyp-list", lambda s: s.forge(None, s.claims(idtyp=["app"])), "token_claims"),
    ("scp-list", lambda s: s.forge(None, s.claims(scp=["x"])), "token_claims"),
]


@dataclass
class Running:
    gateway: Gateway
    signer: ServedSigner
    events: list[Event]
    key: str  # a Keyguard key of bound-app
    stuffing: asyncio.Event

    async def proxy(self, token: str, header: str = "Authorization") -> tuple[int, Any]:
        return await call_proxy(self.gateway, token, header)

    async def admin(self, token: str) -> tuple[int, Any]:
        return await call_admin(self.gateway, token)


async def start(
    tmp: Path, upstream: RunningEmulator, idp: RunningEmulator, **entra: Any
) -> Running:
    signer = install_signer(idp)
    gateway, key = await start_gateway(
        tmp,
        upstream,
        idp,
        monitor={"detect": {"stuffing": {"flood": 10}}, "respond": {"automatic": False}},
        **entra,
    )
    events: list[Event] = []
    stuffing = asyncio.Event()

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, SecurityEvent) and event.kind == "stuffing":
            stuffing.set()

    rt: Any = gateway.runtime
    rt.events.subscribe(sink)
    return Running(gateway, signer, events, key, stuffing)


@pytest.fixture
async def running(
    tmp_path: Path, upstream: RunningEmulator, idp: RunningEmulator
) -> AsyncIterator[Running]:
    run = await start(tmp_path, upstream, idp)
    try:
        yield run
    finally:
        await run.gateway.stop()


def access_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        orjson.loads(r.getMessage())["reason"]
        for r in caplog.records
        if r.name == "keyguard.access"
    ]


def test_every_reason_is_documented() -> None:
    assert DOCUMENTED == REASONS | {"jwt_in_api_key"}


async def test_the_control_token_is_accepted(running: Running) -> None:
    status, body = await running.proxy(running.signer.forge())
    assert status == 200, body
    status, body = await running.admin(
        running.signer.forge(None, running.signer.claims(groups=[ADMIN_GROUP]))
    )
    assert status == 200 and body["role"] == "viewer"


async def test_malformed_tokens_are_401_on_both_ports_and_count_as_failures(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for name, make, _ in CASES:
        token = make(running.signer)
        status, body = await running.proxy(token)
        assert status == 401, (name, status, body)
        assert body["error"]["code"] == "401" and body["error"]["message"], name
        assert token not in orjson.dumps(body).decode()
        status, body = await running.admin(token)
        assert status == 401, (name, status, body)
        assert body["error"]["code"] == "Unauthorized", name
    reasons = access_reasons(caplog)
    assert len(reasons) == len(CASES)
    # "unrecognised_credential": not even a JWT to the proxy (the header is not an object)
    assert set(reasons) <= DOCUMENTED | {"unrecognised_credential"}, set(reasons) - DOCUMENTED
    for (name, _, expected), reason in zip(CASES, reasons, strict=True):
        assert not expected or reason == expected, (name, reason)
    # Not one traceback, not one error line, on either port.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    # The admin API records each failure; the detector sees the proxy's 401s.
    admin_failures = [
        e for e in running.events if isinstance(e, SecurityEvent) and e.kind == "admin_auth_failed"
    ]
    assert len(admin_failures) == len(CASES)
    await asyncio.wait_for(running.stuffing.wait(), timeout=30)  # the detector saw them


async def test_a_client_id_is_never_matched_against_app_names(running: Running) -> None:
    s = running.signer
    for client in ("bound-app", "BOUND-APP", "Bound-App", "app:bound-app", " bound-app"):
        for claims in (s.claims(appid=client), s.claims(appid=None, azp=client, ver="2.0")):
            status, body = await running.proxy(s.forge(None, claims))
            assert status == 401, (client, body)
    status, body = await running.proxy(s.forge(None, s.claims(appid=BOUND_CLIENT.upper())))
    assert status == 200, body  # the same GUID, in capitals
    status, body = await running.proxy(s.forge(None, s.claims(appid=UNBOUND_CLIENT)))
    assert status == 403 and body["error"]["code"] == "NoRoleAssigned"
    status, _ = await running.proxy(s.forge(None, s.claims(xms_par_app_azp="bound-app")))
    assert status == 401
    agent = s.claims(appid=UNBOUND_CLIENT, xms_par_app_azp=BOUND_CLIENT)
    status, body = await running.proxy(s.forge(None, agent))
    assert status == 403, body  # an agent never gets its parent app's bindings


async def test_times_are_finite_integers_within_the_maximum_lifetime(
    tmp_path: Path, upstream: RunningEmulator, idp: RunningEmulator
) -> None:
    run = await start(tmp_path, upstream, idp, max_token_lifetime_s=7200)
    try:
        s, now = run.signer, int(time.time())
        assert (await run.proxy(s.forge(None, s.claims(exp=now + 3600))))[0] == 200
        for claims in (
            s.claims(exp=now + 3 * 3600),  # valid for 3 h from now
            s.claims(iat=now - 3 * 3600, nbf=None, exp=now + 600),  # issued 3 h 10 min before
            s.claims(nbf=now - 3 * 3600, iat=None, exp=now + 600),
            s.claims(iat=None, nbf=None, exp=now + 3 * 3600),
        ):
            status, body = await run.proxy(s.forge(None, claims))
            assert status == 401 and "lifetime" in body["error"]["message"], claims
    finally:
        await run.gateway.stop()


async def test_a_jwt_in_the_api_key_header_is_refused(running: Running) -> None:
    token = running.signer.forge()
    status, body = await running.proxy(token, header="api-key")
    assert status == 401
    assert "Authorization: Bearer" in body["error"]["message"]
    async with aiohttp.ClientSession() as http:
        async with http.post(
            running.gateway.proxy_url + CHAT,
            json=BODY,
            headers={"api-key": token, "Authorization": f"Bearer {token}"},
        ) as resp:
            assert resp.status == 401  # the same token in both: still refused
    assert (await running.proxy(token))[0] == 200


async def test_an_audience_array_is_refused_even_with_the_right_value(running: Running) -> None:
    s = running.signer
    aud = s.claims()["aud"]
    for value in ([aud], [aud, "https://graph.microsoft.com"], ["other", aud]):
        status, body = await running.proxy(s.forge(None, s.claims(aud=value)))
        assert status == 401 and "single" in body["error"]["message"], value


async def test_the_sdk_sees_an_authentication_error(running: Running) -> None:
    s = running.signer
    forged = s.forge(s.header(alg=["RS256"]))
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=running.gateway.proxy_url,
        azure_ad_token=forged,
        api_version=API_VERSION,
        max_retries=0,
    )
    async with client:
        with pytest.raises(openai.AuthenticationError) as refused:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
    assert "not a valid JWT" in refused.value.message
