"""The console's "Sign in with Entra ID" over real sockets against the emulator's identity
provider: hostile sign-ins first (each refused with a page, nothing created), then viewers and
operators by their groups, and a session ending at its access token's expiry."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from pydantic import ValidationError

from keyguard.config import AccessSettings
from keyguard.console.oidc import check_id_claims
from keyguard.console.preauth import COOKIE as PRE_AUTH
from keyguard.console.sessions import COOKIE as SESSION
from keyguard.emulator import EmulatorConfig, RunningEmulator
from keyguard.emulator.signin import user_oid
from keyguard.errors import AuthenticationFailed
from keyguard.events import AdminAction, Event, SecurityEvent
from keyguard.server import Gateway
from tests.support.gateway import runtime
from tests.support.stored import audit_texts, stored_bytes

from .support import (
    ADMIN_AUDIENCE,
    CLIENT_ID,
    ENTRA_USERS,
    OPERATORS,
    ConsoleClient,
    console_client,
    console_gateway,
    csrf_of,
    entra_access,
)

CALLBACK = "/sign-in/entra/callback"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(token_lifetime=600, users=ENTRA_USERS)


@dataclass
class Setup:
    gw: Gateway
    idp: RunningEmulator
    idp_http: aiohttp.ClientSession
    events: list[Event]
    db: Path

    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture
async def setup(
    tmp_path: Path, emulator: RunningEmulator, tls_emulator: RunningEmulator
) -> AsyncIterator[Setup]:
    access = entra_access(tls_emulator)
    context = ssl.create_default_context(cafile=str(tls_emulator.ca_file))
    async with (
        console_gateway(tmp_path, emulator, access=access) as gw,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as idp_http,
    ):
        events: list[Event] = []
        runtime(gw).events.subscribe(events.append)
        yield Setup(gw, tls_emulator, idp_http, events, tmp_path / "keyguard.db")


async def begin(client: ConsoleClient) -> str:
    """Click "Sign in with Entra ID": the authorize URL the console sends the browser to."""
    status, html, _ = await client.get("/sign-in")
    assert status == 200 and 'id="entra-sign-in"' in html
    status, _, resp = await client.get("/sign-in/entra")
    assert status == 302, status
    cookie = resp.cookies[PRE_AUTH]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == CALLBACK
    return resp.headers["Location"]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


async def authorize(setup: Setup, url: str, user: str) -> str:
    """The identity provider signs ``user`` in: the callback URL it sends the browser to."""
    async with setup.idp_http.get(with_query(url, login_hint=user), allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"]


async def callback(client: ConsoleClient, url: str) -> tuple[int, str]:
    parts = urlsplit(url)
    assert parts.path == CALLBACK
    status, html, _ = await client.get(f"{parts.path}?{parts.query}")
    return status, html


async def signed_in_as(client: ConsoleClient) -> str | None:
    status, html, _ = await client.get("/")
    if status != 200:
        return None
    return html.split('id="role">', 1)[1].split("<", 1)[0]


def assert_nothing_opened(setup: Setup, client: ConsoleClient) -> None:
    assert not [e for e in setup.events if isinstance(e, AdminAction)]
    assert not [c for c in client.http.cookie_jar if c.key == SESSION]
    jar = client.http.cookie_jar
    assert not [c for c in jar if c.key == PRE_AUTH and c["path"] == CALLBACK]  # deleted


def refused(setup: Setup) -> list[str]:
    kinds = [e for e in setup.events if isinstance(e, SecurityEvent)]
    return [str(e.evidence.get("reason")) for e in kinds if e.kind == "console_sign_in_refused"]


async def test_a_state_that_is_not_the_cookies_is_refused(setup: Setup) -> None:
    async with console_client(setup.gw) as client:
        back = await authorize(setup, await begin(client), "otto")
        status, html = await callback(client, with_query(back, state="x" * 43))
        assert status == 401 and "not started here" in html
        assert await signed_in_as(client) is None
        assert_nothing_opened(setup, client)
        assert refused(setup) == ["state_mismatch"]


@pytest.mark.parametrize("cookie", [None, "", "forged", "A" * 200, "A" * 5000])
async def test_a_missing_or_forged_pre_auth_cookie_is_refused(
    setup: Setup, cookie: str | None
) -> None:
    async with console_client(setup.gw) as client:
        back = await authorize(setup, await begin(client), "otto")
        client.http.cookie_jar.clear()
        if cookie is not None:
            client.http.cookie_jar.update_cookies({PRE_AUTH: cookie})
        status, html = await callback(client, back)
        assert status == 401 and "sign in again" in html
        assert await signed_in_as(client) is None
        assert_nothing_opened(setup, client)
        assert refused(setup) == ["pre_auth_missing"]


async def test_an_altered_pre_auth_cookie_is_refused(setup: Setup) -> None:
    async with console_client(setup.gw) as client:
        back = await authorize(setup, await begin(client), "otto")
        (sealed,) = [c.value for c in client.http.cookie_jar if c.key == PRE_AUTH]
        flipped = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
        client.http.cookie_jar.clear()
        client.http.cookie_jar.update_cookies({PRE_AUTH: flipped})
        status, _ = await callback(client, back)
        assert status == 401 and refused(setup) == ["pre_auth_missing"]
        assert_nothing_opened(setup, client)


async def test_a_replayed_callback_or_code_opens_nothing(setup: Setup) -> None:
    async with console_client(setup.gw) as client:
        back = await authorize(setup, await begin(client), "otto")
        (sealed,) = [c.value for c in client.http.cookie_jar if c.key == PRE_AUTH]
        assert (await callback(client, back))[0] == 200
    setup.events.clear()
    async with console_client(setup.gw) as thief:
        thief.http.cookie_jar.update_cookies({PRE_AUTH: sealed})  # the same cookie and code
        status, html = await callback(thief, back)
        assert status == 401 and "already used" in html
        again = await begin(thief)  # a fresh sign-in of its own, with the stolen code
        code = parse_qs(urlsplit(back).query)["code"][0]
        state = parse_qs(urlsplit(again).query)["state"][0]
        status, html = await callback(thief, with_query(back, code=code, state=state))
        assert status == 401 and "refused the sign-in" in html
        assert await signed_in_as(thief) is None
        assert_nothing_opened(setup, thief)
        assert refused(setup) == ["pre_auth_replayed", "code_refused"]


async def test_a_code_redeemed_with_another_sign_ins_verifier_is_refused(setup: Setup) -> None:
    async with console_client(setup.gw) as victim, console_client(setup.gw) as attacker:
        victims = await authorize(setup, await begin(victim), "otto")
        own = await begin(attacker)  # the attacker's own cookie: its state, its verifier
        state = parse_qs(urlsplit(own).query)["state"][0]
        status, _ = await callback(attacker, with_query(victims, state=state))
        assert status == 401 and refused(setup) == ["code_refused"]
        assert_nothing_opened(setup, attacker)


async def test_an_id_token_for_another_nonce_is_refused(setup: Setup) -> None:
    async with console_client(setup.gw) as client:
        url = with_query(await begin(client), nonce="n" * 43)
        status, _ = await callback(client, await authorize(setup, url, "otto"))
        assert status == 401 and refused(setup) == ["id_token_nonce"]
        assert_nothing_opened(setup, client)


async def test_an_expired_id_token_is_refused(setup: Setup) -> None:
    async with console_client(setup.gw) as client:
        back = await authorize(setup, await begin(client), "otto")
        clock = setup.idp.state.clock
        setup.idp.state.clock = lambda: clock() - 700  # tokens that ended 100 s ago (skew 60)
        try:
            status, html = await callback(client, back)
        finally:
            setup.idp.state.clock = clock
        assert status == 401 and "took too long" in html
        assert refused(setup) == ["id_token_expired"]
        assert_nothing_opened(setup, client)


async def test_an_identity_with_no_admin_role_is_refused(setup: Setup) -> None:
    async with console_client(setup.gw) as client:
        status, html = await callback(client, await authorize(setup, await begin(client), "nora"))
        assert status == 403 and "no admin role" in html and 'id="entra-sign-in"' in html
        assert await signed_in_as(client) is None
        assert_nothing_opened(setup, client)
        assert refused(setup) == ["no_admin_role"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"aud": ADMIN_AUDIENCE}, "id_token_audience"),
        ({"aud": [CLIENT_ID]}, "id_token_audience"),
        ({"nonce": "other"}, "id_token_nonce"),
        ({"nonce": None}, "id_token_nonce"),
        ({"exp": 1_000}, "id_token_expired"),
        ({"exp": "9999999999"}, "id_token_claims"),
        ({"iss": "https://evil.example/"}, "id_token_issuer"),
        ({"tid": "00000000-0000-4000-8000-0000000000bb"}, "id_token_issuer"),
        ({"oid": "me"}, "id_token_claims"),
    ],
)
def test_id_token_claims_are_checked(change: dict[str, object], reason: str) -> None:
    tenant = "00000000-0000-4000-8000-0000000000aa"
    now = 2_000_000_000
    claims = {
        "iss": f"https://sts.windows.net/{tenant}/",
        "aud": CLIENT_ID,
        "exp": now + 600,
        "iat": now,
        "nonce": "expected",
        "tid": tenant,
        "oid": "00000000-0000-4000-8000-0000000000e1",
    }
    rules = {
        "client_id": CLIENT_ID,
        "issuers": {claims["iss"]},
        "tenants": {tenant},
        "nonce": "expected",
        "skew": 60.0,
    }
    assert check_id_claims(claims, now, **rules).object_id == claims["oid"]  # type: ignore[arg-type]
    with pytest.raises(AuthenticationFailed) as failed:
        check_id_claims({**claims, **change}, now, **rules)  # type: ignore[arg-type]
    assert failed.value.reason == reason


@pytest.mark.parametrize(("user", "role"), [("vera", "viewer"), ("otto", "operator")])
async def test_a_sign_in_opens_a_session_with_the_groups_role(
    setup: Setup, user: str, role: str
) -> None:
    async with console_client(setup.gw) as client:
        status, html = await callback(client, await authorize(setup, await begin(client), user))
        assert status == 200 and 'http-equiv="refresh"' in html and role in html
        assert await signed_in_as(client) == role
        oid = user_oid(setup.idp.state, user)
        actions = [e for e in setup.events if isinstance(e, AdminAction)]
        (signed,) = [e for e in actions if e.action == "console.sign_in"]
        assert (signed.actor, signed.action) == (f"entra:{oid}", "console.sign_in")
        assert signed.after == {"method": "entra", "role": role}
        csrf = csrf_of((await client.get("/keys"))[1])
        status, html, _ = await client.post("/keys", {"app": f"by-{user}", "csrf": csrf})
        assert (status == 200) == (role == "operator"), (status, html[:200])
        actors = {e.actor for e in setup.events if isinstance(e, AdminAction)}
        assert actors == {f"entra:{oid}"}
        made = [e for e in setup.events if isinstance(e, AdminAction) and e.action == "keys.create"]
        assert len(made) == (role == "operator")
    deadline = time.monotonic() + 20
    while not [t for t in audit_texts(setup.db, ["admin"]) if '"console.sign_in"' in t]:
        assert time.monotonic() < deadline, "the sign-in never reached the audit log"
        await asyncio.sleep(0.05)
    (text,) = [t for t in audit_texts(setup.db, ["admin"]) if '"console.sign_in"' in t]
    assert f"entra:{oid}" in text and '"entra"' in text
    assert b"eyJ" not in stored_bytes(setup.db.parent)  # no token kept anywhere


async def test_the_session_ends_at_the_access_tokens_expiry(setup: Setup) -> None:
    async with console_client(setup.gw) as client:
        assert (await callback(client, await authorize(setup, await begin(client), "otto")))[
            0
        ] == 200
        console = setup.gw.access.console  # type: ignore[union-attr]
        assert console is not None
        start = setup.now()
        console.clock = lambda: start + timedelta(seconds=540)  # the token lives 600 s
        assert await signed_in_as(client) == "operator"
        console.clock = lambda: start + timedelta(seconds=605)
        status, _, resp = await client.get("/")
        assert status == 303 and resp.headers["Location"] == "/sign-in"
        csrf_form = {"app": "late", "csrf": "x"}
        assert (await client.post("/keys", csrf_form))[0] == 403


async def test_the_session_ends_at_the_re_check_time_before_the_token(setup: Setup) -> None:
    """A group or binding taken away takes effect within the re-check time: the session does
    not keep the role it had at sign-in until the access token expires."""
    console = setup.gw.access.console  # type: ignore[union-attr]
    assert console is not None
    console.entra_recheck = timedelta(seconds=120)  # the token lives 600 s
    async with console_client(setup.gw) as client:
        start = setup.now()
        assert (await callback(client, await authorize(setup, await begin(client), "otto")))[
            0
        ] == 200
        console.clock = lambda: start + timedelta(seconds=110)
        assert await signed_in_as(client) == "operator"
        console.clock = lambda: start + timedelta(seconds=125)
        status, _, resp = await client.get("/")
        assert status == 303 and resp.headers["Location"] == "/sign-in"


async def test_the_entra_callback_is_throttled_per_address(setup: Setup) -> None:
    async with console_client(setup.gw) as client:
        for _ in range(15):  # a start spends nothing
            assert (await client.get("/sign-in/entra"))[0] == 302
        for _ in range(10):  # a failed callback spends an attempt
            assert (await client.get(f"{CALLBACK}?state=x&code=y"))[0] == 401
        status, _, resp = await client.get(f"{CALLBACK}?state=x&code=y")
        assert status == 429 and "Retry-After" in resp.headers
        status, html, resp = await client.get("/sign-in/entra")  # nor starts while empty
        assert status == 429 and "Too many sign-in attempts" in html
        assert int(resp.headers["Retry-After"]) >= 1 and "Location" not in resp.headers
        assert refused(setup)[-1] == "throttled" and refused(setup).count("throttled") == 1
        assert not [e for e in setup.events if isinstance(e, AdminAction)]


async def test_signing_in_with_entra_again_and_again_is_never_throttled(setup: Setup) -> None:
    async with console_client(setup.gw) as client:
        for _ in range(12):  # each sign-in is one attempt, given back when it succeeds
            status, html = await callback(
                client, await authorize(setup, await begin(client), "otto")
            )
            assert status == 200, html[:300]
        assert await signed_in_as(client) == "operator"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/sign-in/entra", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"}),
        ("/sign-in/entra", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "document"}),
        ("/sign-in/entra", {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Dest": "document"}),
        ("/sign-in/entra", {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "script"}),
        (f"{CALLBACK}?state=x&code=y", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"}),
        (f"{CALLBACK}?state=x&code=y", {"Sec-Fetch-Dest": "iframe"}),
    ],
)
async def test_another_sites_page_spends_none_of_its_visitors_attempts(
    setup: Setup, path: str, headers: dict[str, str]
) -> None:
    async with console_client(setup.gw) as client:
        for _ in range(20):  # <img src="https://console/sign-in/entra"> on a hostile page
            status, _, resp = await client.get(path, headers=headers)
            assert status == 403 and "Set-Cookie" not in resp.headers
        assert "throttled" not in refused(setup)
        # a top-level navigation: from the console's page, the address bar, Entra's redirect
        page = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "document"}
        assert (await client.get("/sign-in/entra", headers=page))[0] == 302
        typed = {"Sec-Fetch-Site": "none", "Sec-Fetch-Dest": "document"}
        assert (await client.get("/sign-in/entra", headers=typed))[0] == 302
        url = await authorize(setup, await begin(client), "otto")
        parts = urlsplit(url)
        back = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "document"}
        status, html, _ = await client.get(f"{parts.path}?{parts.query}", headers=back)
        assert status == 200, html[:300]
        assert await signed_in_as(client) == "operator"


async def test_behind_a_tls_proxy_the_redirect_uri_is_the_public_origins(
    tmp_path: Path, emulator: RunningEmulator, tls_emulator: RunningEmulator
) -> None:
    access = entra_access(tls_emulator)
    access["admin"]["console_public_url"] = "https://console.example.test"
    access["trusted_proxies"] = ["127.0.0.1/32"]
    async with (
        console_gateway(tmp_path, emulator, access=access) as gw,
        console_client(gw) as client,
    ):
        status, _, resp = await client.get("/sign-in/entra", headers={"X-Forwarded-Host": "evil"})
        assert status == 302
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
        assert query["redirect_uri"] == ["https://console.example.test" + CALLBACK]
        (cookie,) = resp.headers.getall("Set-Cookie")
        # __Host-: a sibling subdomain cannot plant it (no Domain), and so it is Path=/
        assert cookie.startswith("__Host-kg_console_signin=")
        attributes = [a.strip().lower() for a in cookie.split(";")[1:]]
        assert {"secure", "httponly", "path=/", "samesite=lax"} <= set(attributes)
        assert not [a for a in attributes if a.startswith("domain")]
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_the_button_is_absent_without_entra(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with console_gateway(tmp_path, emulator) as gw, console_client(gw) as client:
        status, html, _ = await client.get("/sign-in")
        assert status == 200 and "entra-sign-in" not in html
        assert (await client.get("/sign-in/entra"))[0] == 404
        assert (await client.get(CALLBACK))[0] == 404


@pytest.mark.parametrize(
    ("admin", "error"),
    [
        ({"console_client_id": "console"}, "a GUID"),
        ({"console_client_id": CLIENT_ID, "entra_groups": {}}, "needs admin.entra_groups"),
        ({"console_redirect_path": "https://evil.example/cb"}, "must be a path"),
        ({"console_redirect_path": "//evil.example/cb"}, "must be a path"),
        ({"console_redirect_path": "/sign-in"}, "console's own pages"),
        ({"console_authority": "http://login.example/t/v2.0"}, "https://"),
    ],
)
def test_a_careless_console_sign_in_setting_fails_at_start(
    admin: dict[str, object], error: str
) -> None:
    tenant = "00000000-0000-4000-8000-0000000000aa"
    raw = {
        "policy": {"managed": True},
        "entra": {"tenants": [tenant], "audiences": [ADMIN_AUDIENCE]},
        "admin": {"entra_groups": {OPERATORS: "operator"}, **admin},
    }
    with pytest.raises(ValidationError, match=error):
        AccessSettings.model_validate(raw)


async def test_a_confidential_client_sends_the_secret_from_the_vault(
    tmp_path: Path, emulator: RunningEmulator, tls_emulator: RunningEmulator
) -> None:
    secret_name = "console/entra-client-secret"
    tls_emulator.state.config = replace(
        tls_emulator.config, client_secrets={CLIENT_ID: "the-registered-secret"}
    )
    access = entra_access(tls_emulator)
    access["admin"]["console_client_secret_vault"] = secret_name
    context = ssl.create_default_context(cafile=str(tls_emulator.ca_file))
    for stored, expected in (("a-stale-secret", 401), ("the-registered-secret", 200)):
        folder = tmp_path / str(expected)
        folder.mkdir()
        async with (
            console_gateway(folder, emulator, access=access, vault={secret_name: stored}) as gw,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as idp_http,
            console_client(gw) as client,
        ):
            setup = Setup(gw, tls_emulator, idp_http, [], folder / "keyguard.db")
            status, html = await callback(
                client, await authorize(setup, await begin(client), "otto")
            )
            assert status == expected, html[:300]
            assert (await signed_in_as(client)) == ("operator" if expected == 200 else None)
            assert stored.encode() not in stored_bytes(folder)  # sealed in the vault only
