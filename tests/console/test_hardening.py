"""The console against a caller with time on their hands, over a real socket: sign-ins in a loop
(throttled per address, counted as authentication failures, filling no table and ending nobody
else's session), a console behind a proxy that ends TLS (``__Host-`` cookie, HSTS, its public
origin the only one a change may come from, ``X-Forwarded-Proto`` ignored), a store error that
must not carry SQL parameters into the logs, and a revoked token's sessions."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text
from yarl import URL

from keyguard.cli.support import cli_actor
from keyguard.config import AccessSettings
from keyguard.console import Console
from keyguard.console.sessions import digest
from keyguard.console.sql_sessions import SqlSessions
from keyguard.emulator import RunningEmulator
from keyguard.events import Event, SecurityEvent
from keyguard.server import Gateway
from keyguard.wiring.access import CONSOLE_SESSION_KEY
from tests.support.gateway import runtime

from .support import ConsoleClient, admin_token, console_client, console_gateway, csrf_of

PUBLIC = "https://console.example.test"


@pytest.fixture
async def gw(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[Gateway]:
    async with console_gateway(tmp_path, emulator) as gateway:
        yield gateway


def console_of(gw: Gateway) -> Console:
    assert gw.access is not None and gw.access.console is not None
    return gw.access.console


def watch(gw: Gateway) -> list[Event]:
    events: list[Event] = []
    runtime(gw).events.subscribe(events.append)
    return events


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events if isinstance(e, SecurityEvent)]


def session_cookie(client: ConsoleClient) -> str:
    return client.http.cookie_jar.filter_cookies(URL(client.origin))["kg_console"].value


# -- sign-in floods ----------------------------------------------------------------------


async def test_sign_in_attempts_are_throttled_per_address_and_counted(gw: Gateway) -> None:
    events = watch(gw)
    token = await admin_token(gw, "viewer")
    async with console_client(gw) as client:
        evil = {"Origin": "https://evil.example"}  # another site's page spends no attempt
        for _ in range(12):
            assert (await client.post("/sign-in", {"token": token}, headers=evil))[0] == 403
        for guess in ["kga_" + "x" * 40] * 9 + ["not-a-token"]:
            assert (await client.post("/sign-in", {"token": guess}))[0] == 401
        # every failure is an admin_auth_failed event, as a failed API call is
        assert kinds(events).count("admin_auth_failed") == 10
        for _ in range(3):  # even the right token: the address has used its attempts
            status, html, resp = await client.post("/sign-in", {"token": token})
            assert status == 429 and "Set-Cookie" not in resp.headers
            assert 1 <= int(resp.headers["Retry-After"]) <= 6
            assert "Too many sign-in attempts" in html and token not in html
            assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
        throttled = [
            e
            for e in events
            if isinstance(e, SecurityEvent) and e.kind == "console_sign_in_refused"
        ]
        assert len(throttled) == 1  # one event for the run, not one per refusal
        assert throttled[0].evidence["reason"] == "throttled" and throttled[0].source
        assert kinds(events).count("admin_auth_failed") == 10  # a refused attempt is not read
        assert not [c for c in client.http.cookie_jar if c.key == "kg_console"]
        console = console_of(gw)
        real = console.clock
        console.clock = lambda: real() + timedelta(seconds=7)  # a token back
        try:
            await client.sign_in(token)
        finally:
            console.clock = real
        assert (await client.get("/keys"))[0] == 200


async def test_only_failed_sign_ins_spend_the_throttle(gw: Gateway) -> None:
    """Behind a proxy every admin may share one address: their own sign-ins must not use up
    its attempts, only failures do."""
    token = await admin_token(gw, "operator")
    async with console_client(gw) as client:
        for _ in range(25):
            await client.sign_in(token)
        for _ in range(10):
            assert (await client.post("/sign-in", {"token": "kga_" + "x" * 40}))[0] == 401
        assert (await client.post("/sign-in", {"token": token}))[0] == 429  # empty: not read


async def test_the_throttle_counts_the_address_the_trusted_proxies_vouch_for(
    tmp_path: Path, emulator: RunningEmulator, gw: Gateway
) -> None:
    wrong = {"token": "kga_" + "x" * 40}
    async with console_client(gw) as client:  # no trusted proxies: X-Forwarded-For is forged
        for n in range(10):
            headers = {"Origin": client.origin, "X-Forwarded-For": f"203.0.113.{n}"}
            assert (await client.post("/sign-in", wrong, headers=headers))[0] == 401
        headers = {"Origin": client.origin, "X-Forwarded-For": "203.0.113.99"}
        assert (await client.post("/sign-in", wrong, headers=headers))[0] == 429
    access = {"policy": {"managed": True}, "trusted_proxies": ["127.0.0.1/32"]}
    async with (
        console_gateway(tmp_path / "proxied", emulator, access=access) as proxied,
        console_client(proxied) as client,
    ):
        one = {"Origin": client.origin, "X-Forwarded-For": "203.0.113.1"}
        for _ in range(10):
            assert (await client.post("/sign-in", wrong, headers=one))[0] == 401
        assert (await client.post("/sign-in", wrong, headers=one))[0] == 429
        # the proxy's other clients keep their own attempts, and so does the proxy itself
        other = {"Origin": client.origin, "X-Forwarded-For": "203.0.113.2"}
        assert (await client.post("/sign-in", wrong, headers=other))[0] == 401
        assert (await client.post("/sign-in", wrong))[0] == 401


async def test_a_sign_in_refused_for_a_full_table_keeps_the_browsers_session(
    gw: Gateway,
) -> None:
    tokens = [await admin_token(gw, "viewer") for _ in range(3)]
    async with console_client(gw) as client, console_client(gw) as other:
        await client.sign_in(tokens[0])
        await other.sign_in(tokens[1])
        console = console_of(gw)
        key = await runtime(gw).vault.get_or_create_random(CONSOLE_SESSION_KEY, 32)
        engine = runtime(gw).engine
        assert engine is not None
        console.sessions = SqlSessions(engine, key=key, max_sessions=2)  # full now
        status, html, _ = await client.post("/sign-in", {"token": tokens[2]})
        assert status == 503 and "too many open sessions" in html
        assert (await client.get("/keys"))[0] == 200  # still signed in as before


async def test_a_viewer_signing_in_again_and_again_ends_only_its_own_sessions(
    gw: Gateway,
) -> None:
    operator, viewer = await admin_token(gw, "operator"), await admin_token(gw, "viewer")
    async with console_client(gw) as kept:
        await kept.sign_in(operator)
        cookies = []
        for _ in range(8):  # fresh browsers: nothing closes the previous session
            async with console_client(gw) as loop:
                await loop.sign_in(viewer)
                cookies.append(session_cookie(loop))
        assert (await kept.get("/keys"))[0] == 200  # the operator is still signed in
        csrf = await kept.csrf()
        assert (await kept.post("/keys", {"app": "after-flood", "csrf": csrf}))[0] == 200
        for n, cookie in enumerate(cookies):
            async with console_client(gw) as replay:
                replay.http.cookie_jar.update_cookies({"kg_console": cookie})
                status, _, _ = await replay.get("/keys")
                assert status == (200 if n >= 3 else 303), n  # the viewer keeps its newest 5
    async with runtime(gw).engine.connect() as conn:  # type: ignore[union-attr]
        rows = (await conn.execute(text("SELECT count(*) FROM console_sessions"))).scalar()
    assert rows == 6


# -- cookies and origins -----------------------------------------------------------------


async def test_behind_a_tls_proxy_the_cookie_is_host_prefixed_and_secure(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    access = {
        "policy": {"managed": True},
        "trusted_proxies": ["127.0.0.1/32"],
        "admin": {"console_public_url": PUBLIC + "/"},
    }
    async with (
        console_gateway(tmp_path, emulator, access=access) as gw,
        console_client(gw) as client,
    ):
        token = await admin_token(gw, "operator")
        # the admin port's own origin is not the console's: a form from it is refused
        assert (await client.post("/sign-in", {"token": token}))[0] == 403
        headers = {"Origin": PUBLIC}
        status, _, resp = await client.post("/sign-in", {"token": token}, headers=headers)
        assert status == 303
        (cookie,) = resp.headers.getall("Set-Cookie")
        name, _, rest = cookie.partition("=")
        assert name == "__Host-kg_console"
        attributes = {a.strip().split("=")[0].lower() for a in rest.split(";")[1:]}
        assert {"secure", "httponly", "path", "samesite"} <= attributes
        assert "domain" not in attributes and "Path=/" in cookie
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
        value = resp.cookies["__Host-kg_console"].value
        async with aiohttp.ClientSession() as http:  # a browser sends it to the public origin
            sent = {"Cookie": f"__Host-kg_console={value}"}
            async with http.get(
                client.origin + "/keys", headers=sent, allow_redirects=False
            ) as page:
                assert page.status == 200 and "Strict-Transport-Security" in page.headers
                csrf = csrf_of(await page.text())
            async with http.get(
                client.origin + "/keys",
                headers={"Cookie": f"kg_console={value}"},
                allow_redirects=False,
            ) as page:
                assert page.status == 303  # the unprefixed name is not the session cookie
            form = {"app": "via-proxy", "csrf": csrf}
            own = {**sent, "Origin": client.origin}
            async with http.post(client.origin + "/keys", data=form, headers=own) as answer:
                assert answer.status == 403
            async with http.post(
                client.origin + "/keys", data=form, headers={**sent, "Origin": PUBLIC}
            ) as answer:
                assert answer.status == 200
            async with http.post(
                client.origin + "/sign-out",
                data={"csrf": csrf},
                headers={**sent, "Origin": PUBLIC},
                allow_redirects=False,
            ) as answer:
                assert answer.status == 303
                (gone,) = answer.headers.getall("Set-Cookie")
            async with http.get(
                client.origin + "/keys", headers=sent, allow_redirects=False
            ) as page:
                assert page.status == 303  # the session is closed
    # the browser drops the cookie: its name, Secure (a __Host- cookie is refused without),
    # Path=/ and an expiry in the past
    assert gone.startswith('__Host-kg_console=""') or gone.startswith("__Host-kg_console=;")
    dropped = [a.strip().lower() for a in gone.split(";")[1:]]
    assert "secure" in dropped and "path=/" in dropped
    assert "max-age=0" in dropped or any(a.startswith("expires=thu, 01 jan 1970") for a in dropped)


async def test_x_forwarded_proto_is_not_believed(gw: Gateway) -> None:
    token = await admin_token(gw, "viewer")
    async with console_client(gw) as client:
        headers = {"Origin": client.origin, "X-Forwarded-Proto": "https"}
        status, _, resp = await client.post("/sign-in", {"token": token}, headers=headers)
        assert status == 303
        cookie = resp.headers["Set-Cookie"]
        assert cookie.startswith("kg_console=") and "Secure" not in cookie
        assert "Strict-Transport-Security" not in resp.headers
        spoofed = {"Origin": "https://" + client.origin.removeprefix("http://")}
        status, _, _ = await client.post("/sign-in", {"token": token}, headers=spoofed)
        assert status == 403


@pytest.mark.parametrize(
    "url",
    ["ftp://console.example", "https://console.example/console", "https://u:p@x.example",
     "https://x.example/?a=1", "console.example", "https://x.example:99999"],
)  # fmt: skip
def test_a_public_url_that_is_not_an_origin_fails_at_start(url: str) -> None:
    from pydantic import ValidationError

    from keyguard.admin.settings import AdminAccessSettings

    with pytest.raises(ValidationError, match="console_public_url"):
        AdminAccessSettings(console_public_url=url)
    normal = AdminAccessSettings(console_public_url="HTTPS://Console.Example:443/")
    assert normal.console_public_url == "https://console.example"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [("http://console.example", False), ("http://10.0.0.5:8081", False),
     ("http://[::ffff:127.0.0.1]", False), ("http://127.0.0.1:8081", True),
     ("http://[::1]:8081", True), ("http://LocalHost", True)],
)  # fmt: skip
def test_a_plain_http_public_url_is_for_loopback_only(url: str, allowed: bool) -> None:
    from pydantic import ValidationError

    from keyguard.admin.settings import AdminAccessSettings

    if allowed:
        assert AdminAccessSettings(console_public_url=url).console_public_url
    else:
        with pytest.raises(ValidationError, match=r"must be https://.*127\.0\.0\.1"):
            AdminAccessSettings(console_public_url=url)


def test_a_public_url_needs_the_proxy_among_the_trusted_proxies() -> None:
    from pydantic import ValidationError

    admin = {"console_public_url": PUBLIC}
    with pytest.raises(ValidationError, match="set access.trusted_proxies"):
        AccessSettings.model_validate({"policy": {"managed": True}, "admin": admin})
    AccessSettings.model_validate(
        {"policy": {"managed": True}, "admin": admin, "trusted_proxies": ["10.1.2.3/32"]}
    )


@pytest.mark.parametrize(
    ("public", "tls", "secure"),
    [(None, False, False), (None, True, True), (PUBLIC, False, True),
     ("http://127.0.0.1:8081", False, False), ("http://127.0.0.1:8081", True, True)],
)  # fmt: skip
def test_cookies_are_secure_when_the_public_url_or_the_admin_port_is_https(
    gw: Gateway, public: str | None, tls: bool, secure: bool
) -> None:
    from aiohttp.test_utils import make_mocked_request

    console = console_of(gw)
    console.public_url = public
    request = make_mocked_request(
        "GET", "/", sslcontext=ssl.create_default_context() if tls else None
    )
    assert request.secure is tls
    assert console.secure(request) is secure
    assert console.cookie(request) == ("__Host-kg_console" if secure else "kg_console")


# -- store errors and logs ---------------------------------------------------------------


async def test_a_store_error_logs_its_message_never_sql_parameters(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """The session lookup's SQL carries the digest of the cookie's session id as a parameter;
    the driver's error quotes it. With the table gone, every console path that touches it
    answers 503 and logs one line without it."""
    token = await admin_token(gw, "operator")
    caplog.set_level(logging.DEBUG)
    async with console_client(gw) as client:
        await client.sign_in(token)
        cookie = session_cookie(client)
        csrf = await client.csrf()
        async with runtime(gw).engine.begin() as conn:  # type: ignore[union-attr]
            await conn.execute(text("DROP TABLE console_sessions"))
        caplog.clear()
        assert (await client.get("/keys"))[0] == 503
        assert (await client.post("/keys", {"app": "x", "csrf": csrf}))[0] == 503
        assert (await client.post("/sign-out", {"csrf": csrf}))[0] == 503
        logged = caplog.text
        assert "store: read a console session failed" in logged
        caplog.clear()
        status, html, _ = await client.post("/sign-in", {"token": token})
        assert status == 503 and "unavailable" in html
        signing_in = [r.getMessage() for r in caplog.records if r.name == "keyguard.console"]
        assert len(signing_in) == 1 and "store: open a console session failed" in signing_in[0]
        assert "POST '/sign-in'" in signing_in[0]
    logged += caplog.text
    for canary in (digest(cookie), cookie, csrf, token, "[parameters", "SELECT", "Traceback"):
        assert canary not in logged, canary
    assert not [r for r in caplog.records if r.exc_info]


# -- revoked admin tokens ----------------------------------------------------------------


async def test_a_revoked_tokens_session_can_change_nothing_at_once(gw: Gateway) -> None:
    token = await admin_token(gw, "operator")
    async with console_client(gw) as client:
        await client.sign_in(token)
        csrf = await client.csrf()
        service = gw.access.api.service  # type: ignore[union-attr]
        (listed,) = await service.list_admin_tokens(cli_actor())
        await service.revoke_admin_token(cli_actor(), listed.token_id)
        status, _, _ = await client.post("/keys", {"app": "revoked", "csrf": csrf})
        assert status == 403
        assert not await runtime(gw).keys.list(app="revoked", now=datetime.now(UTC))
        status, _, resp = await client.get("/keys")
        assert status == 303 and resp.headers["Location"] == "/sign-in"
        assert (await client.post("/sign-in", {"token": token}))[0] == 401
