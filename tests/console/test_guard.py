"""The console against a hostile caller, over a real socket: no session, a forged or expired
one, a change without the CSRF token or from another origin, a viewer trying to change things,
markup planted in what the console shows, and the headers on every answer."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text
from yarl import URL

from keyguard.emulator import RunningEmulator
from keyguard.emulator.tls import ensure_certificates
from keyguard.events import AdminAction, Event, SecurityEvent
from keyguard.server import Gateway
from tests.support.gateway import new_key, running_gateway, runtime

from .support import ConsoleClient, admin_token, console_client, console_gateway, csrf_of


def key_id_on(html: str) -> str:
    found = re.search(r'id="key-id">([0-9A-Za-z]{12})<', html)
    assert found, "no key id on the page"
    return found.group(1)


PAGES = ["/", "/keys", "/incidents", "/audit", "/policy"]


@pytest.fixture
async def gw(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[Gateway]:
    async with console_gateway(tmp_path, emulator) as gateway:
        yield gateway


@pytest.fixture
async def client(gw: Gateway) -> AsyncIterator[ConsoleClient]:
    async with console_client(gw) as c:
        yield c


def _assert_headers(resp: aiohttp.ClientResponse) -> None:
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", PAGES)
async def test_no_session_redirects_to_sign_in(client: ConsoleClient, path: str) -> None:
    status, _, resp = await client.get(path)
    assert status == 303 and resp.headers["Location"] == "/sign-in"
    _assert_headers(resp)


async def test_a_forged_session_is_no_session(client: ConsoleClient, gw: Gateway) -> None:
    client.http.cookie_jar.update_cookies({"kg_console": "A" * 43})
    status, _, resp = await client.get("/keys")
    assert status == 303 and resp.headers["Location"] == "/sign-in"
    status, _, _ = await client.post("/keys", {"app": "x", "csrf": "A" * 43})
    assert status == 403
    assert not await runtime(gw).keys.list(app="x", include_revoked=True, now=datetime.now(UTC))


async def test_a_bad_token_does_not_sign_in(client: ConsoleClient, gw: Gateway) -> None:
    _, key = await new_key(gw, "app")  # a proxy key is not an admin credential
    for token in ("kga_" + "x" * 40, key, "", "x" * 10_000):
        status, html, resp = await client.post("/sign-in", {"token": token})
        assert status in (401, 413), status
        assert "Set-Cookie" not in resp.headers and key not in html


async def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(
    client: ConsoleClient, gw: Gateway
) -> None:
    token = await admin_token(gw, "viewer")
    status, html, resp = await client.post("/sign-in", {"token": token})
    assert status == 303
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; TLS on the admin port adds it
    assert "Strict-Transport-Security" not in resp.headers
    assert token not in cookie
    status, html, resp = await client.get("/")
    assert status == 200 and token not in html
    _assert_headers(resp)
    first = client.http.cookie_jar.filter_cookies(URL(client.origin))["kg_console"].value
    await client.sign_in(token)  # signing in again replaces the session, never reuses its id
    session = client.http.cookie_jar.filter_cookies(URL(client.origin))["kg_console"].value
    assert session != first
    async with console_client(client.gateway) as stale:
        stale.http.cookie_jar.update_cookies({"kg_console": first})
        assert (await stale.get("/keys"))[0] == 303
    csrf = await client.csrf("/")
    status, _, _ = await client.post("/sign-out", {"csrf": csrf})
    assert status == 303
    # the old cookie, replayed, no longer opens anything
    client.http.cookie_jar.update_cookies({"kg_console": session})
    status, _, resp = await client.get("/keys")
    assert status == 303 and resp.headers["Location"] == "/sign-in"


async def test_a_session_ends_when_its_token_is_revoked_or_it_expires(
    client: ConsoleClient, gw: Gateway
) -> None:
    token = await admin_token(gw, "admin")
    await client.sign_in(token)
    assert (await client.get("/keys"))[0] == 200
    access = gw.access
    assert access is not None and access.console is not None
    service = access.api.service
    from keyguard.cli.support import cli_actor

    (listed,) = [t for t in await service.list_admin_tokens(cli_actor()) if t.role == "admin"]
    await service.revoke_admin_token(cli_actor(), listed.token_id)
    status, _, resp = await client.get("/keys")
    assert status == 303 and resp.headers["Location"] == "/sign-in"
    # expiry: a session idle past its timeout is gone
    other = await admin_token(gw, "viewer")
    await client.sign_in(other)
    console = access.console
    real = console.clock
    console.clock = lambda: real() + timedelta(hours=9)
    try:
        status, _, resp = await client.get("/keys")
    finally:
        console.clock = real
    assert status == 303


async def test_changes_need_the_csrf_token(client: ConsoleClient, gw: Gateway) -> None:
    await client.sign_in(await admin_token(gw, "admin"))
    csrf = await client.csrf()
    for form in (
        {"app": "nocsrf"},
        {"app": "nocsrf", "csrf": csrf[:-1] + "x"},
        {"app": "nocsrf", "csrf": ""},
    ):
        status, html, resp = await client.post("/keys", form)
        assert status == 403, status
        _assert_headers(resp)
    assert not await runtime(gw).keys.list(app="nocsrf", now=datetime.now(UTC))
    status, _, _ = await client.post("/keys", {"app": "withcsrf", "csrf": csrf})
    assert status == 200
    assert len(await runtime(gw).keys.list(app="withcsrf", now=datetime.now(UTC))) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # and no fetch metadata
        {},  # neither
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_cross_origin_changes_are_refused(
    client: ConsoleClient, gw: Gateway, headers: dict[str, str]
) -> None:
    await client.sign_in(await admin_token(gw, "admin"))
    csrf = await client.csrf()
    status, _, _ = await client.post("/keys", {"app": "crossorigin", "csrf": csrf}, headers=headers)
    assert status == 403
    assert not await runtime(gw).keys.list(app="crossorigin", now=datetime.now(UTC))
    status, _, _ = await client.post("/sign-in", {"token": "x"}, headers=headers)
    assert status == 403


async def test_a_same_origin_form_under_no_referrer_is_accepted(
    client: ConsoleClient, gw: Gateway
) -> None:
    """Under ``Referrer-Policy: no-referrer`` a browser sends ``Origin: null``; the fetch
    metadata then says where the form came from."""
    await client.sign_in(await admin_token(gw, "operator"))
    csrf = await client.csrf()
    headers = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    status, _, _ = await client.post("/keys", {"app": "nullorigin", "csrf": csrf}, headers=headers)
    assert status == 200


async def test_a_viewer_changes_nothing(client: ConsoleClient, gw: Gateway) -> None:
    key_id, _ = await new_key(gw, "held")
    token = await admin_token(gw, "viewer")
    events: list[Event] = []
    runtime(gw).events.subscribe(events.append)
    await client.sign_in(token)
    for path in PAGES + [f"/keys/{key_id}"]:
        status, html, _ = await client.get(path)
        assert status == 200, path
        assert "Suspend" not in html and "Create key" not in html and "Resolve" not in html
        assert "Acknowledge" not in html
    csrf = await client.csrf()
    attempts = (
        [("/keys", {"app": "viewer-made"})]
        + [(f"/keys/{key_id}/{change}", {}) for change in ("suspend", "revoke", "rotate", "resume")]
        + [("/incidents/0123456789abcdef/resolve", {})]
        + [("/incidents/0123456789abcdef/acknowledge", {})]
    )
    for path, form in attempts:
        status, html, _ = await client.post(path, {**form, "csrf": csrf})
        assert status == 403 and "operator" in html, path
        if path.startswith("/keys/"):  # the confirmation pages too
            assert (await client.get(path))[0] == 403, path
    record = await runtime(gw).keys.get(key_id)
    assert record.suspended_at is None and record.revoked_at is None
    assert not await runtime(gw).keys.list(app="viewer-made", now=datetime.now(UTC))
    actions = {e.action for e in events if isinstance(e, AdminAction)}
    reads = {"keys.list", "keys.get", "alerts.list", "policy.get", "usage.read"}
    reads |= {"audit.activity", "audit.search", "audit.verification", "console.sign_in"}
    assert actions and actions <= reads, actions


async def test_markup_in_what_the_console_shows_is_escaped(
    client: ConsoleClient, gw: Gateway
) -> None:
    script = "<script>alert(1)</script>"
    await client.sign_in(await admin_token(gw, "admin"))
    csrf = await client.csrf()
    status, html, _ = await client.post(
        "/keys",
        {"app": "xss", "description": script + '"><img src=x onerror=alert(2)>', "csrf": csrf},
    )
    assert status == 200 and script not in html
    for path in ("/keys", f"/keys/{key_id_on(html)}"):
        status, html, _ = await client.get(path)
        assert status == 200 and script not in html and "&lt;script&gt;" in html, path
        assert "<img" not in html, path
    status, html, _ = await client.post("/keys", {"app": script, "csrf": csrf})
    assert status == 400 and script not in html and "&lt;script&gt;" in html
    runtime(gw).events.emit(
        SecurityEvent(
            datetime.now(UTC),
            "key_expiring",
            "high",
            f"evil {script}",
            app=script,
            evidence={"note": script, script: "x"},
        )
    )
    monitoring = gw.monitoring
    assert monitoring is not None
    await monitoring.recorder.drain()
    for path in ("/incidents", "/", "/keys", "/audit?kind=security"):
        status, html, _ = await client.get(path)
        assert status == 200 and script not in html and "<img" not in html, path
    status, html, _ = await client.get("/incidents")
    assert "evil &lt;script&gt;" in html


async def test_acknowledging_an_incident_in_the_console(client: ConsoleClient, gw: Gateway) -> None:
    """A viewer cannot (403, nothing changed); an unknown id is a 404 page; an operator's
    acknowledgement is the service's, audited with the actor, and a second one changes
    nothing."""
    events: list[Event] = []
    runtime(gw).events.subscribe(events.append)
    runtime(gw).events.emit(
        SecurityEvent(datetime.now(UTC), "key_expiring", "low", "Key expires soon.", app="web")
    )
    assert gw.monitoring is not None
    await gw.monitoring.recorder.drain()
    assert gw.access is not None
    service = gw.access.api.service
    from keyguard.cli.support import cli_actor

    (incident,) = await service.list_incidents(cli_actor())
    path = f"/incidents/{incident.id}/acknowledge"
    await client.sign_in(await admin_token(gw, "viewer"))
    status, html, _ = await client.post(path, {"csrf": await client.csrf("/incidents")})
    assert status == 403 and "operator" in html
    assert (await service.list_incidents(cli_actor()))[0].status == "open"

    await client.sign_in(await admin_token(gw, "operator"))
    csrf = await client.csrf("/incidents")
    status, html, _ = await client.get("/incidents")
    assert f'action="{path}"' in html
    status, html, _ = await client.post(path, {})  # no CSRF token
    assert status == 403
    for bad in ("0123456789abcdef", "ZZZ"):
        status, html, _ = await client.post(f"/incidents/{bad}/acknowledge", {"csrf": csrf})
        assert status == 404 and "no incident" in html, bad
    status, _, resp = await client.post(path, {"csrf": csrf})
    assert status == 303 and resp.headers["Location"] == "/incidents"
    (acked,) = await service.list_incidents(cli_actor())
    assert acked.status == "acknowledged" and acked.acknowledged_by
    status, _, _ = await client.post(path, {"csrf": csrf})
    assert status == 303
    (again,) = await service.list_incidents(cli_actor())
    assert (again.acknowledged_by, again.acknowledged_at) == (
        acked.acknowledged_by,
        acked.acknowledged_at,
    )
    status, html, _ = await client.get("/incidents?status=acknowledged")
    assert status == 200 and f'data-incident="{incident.id}"' in html
    assert f'action="{path}"' not in html and "Resolve" in html
    assert acked.acknowledged_by in html
    done = [e for e in events if isinstance(e, AdminAction) and e.action == "alerts.acknowledge"]
    assert [e.actor for e in done] == [acked.acknowledged_by] * 2


async def chain_state(client: ConsoleClient, wanted: str, within: float = 30.0) -> str:
    """The Audit page once its whole-chain verification says ``wanted`` (reloaded until then:
    the run is in the background)."""
    deadline = time.monotonic() + within
    while True:
        status, html, _ = await client.get("/audit")
        assert status == 200, html[:300]
        found = re.search(r'id="chain-state"[^>]*>([^<]*)<', html)
        assert found, "no chain state on the page"
        if found.group(1).strip() == wanted:
            return html
        assert time.monotonic() < deadline, f"the chain never showed {wanted!r}: {found.group(1)}"
        await asyncio.sleep(0.05)


async def test_the_audit_page_shows_the_whole_chain_broken_and_where(
    client: ConsoleClient, gw: Gateway
) -> None:
    """A viewer's look starts the first run (verified); a viewer cannot start one at will; a
    record edited in the store by someone without the signing key makes the next run, started
    by an operator, say broken and name the record and its writer, and opens an incident."""
    await client.sign_in(await admin_token(gw, "viewer"))
    html = await chain_state(client, "verified")
    assert "Verify now" not in html
    csrf = csrf_of(html)
    status, html, _ = await client.post("/audit/verify", {"csrf": csrf})
    assert status == 403 and "operator" in html
    engine = runtime(gw).engine
    assert engine is not None
    deadline = time.monotonic() + 30
    while True:  # the audit writer commits its records in batches
        async with engine.connect() as conn:
            chain = (
                await conn.execute(text("SELECT chain FROM audit_records WHERE seq = 2 LIMIT 1"))
            ).scalar()
        if chain is not None:
            break
        assert time.monotonic() < deadline, "no audit record was written"
        await asyncio.sleep(0.05)
    async with engine.begin() as conn:  # the hostile store writer: SQL, no signing key
        await conn.execute(
            text("UPDATE audit_records SET data = :d, packed = NULL WHERE chain = :c AND seq = 2"),
            {"d": '{"action":"nothing"}', "c": chain},
        )
    await client.sign_in(await admin_token(gw, "operator"))
    status, html, _ = await client.get("/audit")
    assert status == 200 and 'id="verify-now"' in html
    status, _, resp = await client.post("/audit/verify", {"csrf": csrf_of(html)})
    assert status == 303 and resp.headers["Location"] == "/audit"
    html = await chain_state(client, "broken")
    where = re.search(r'id="chain-where"[^>]*>([^<]*)<', html)
    assert where and f"seq 2 of writer {chain}" in where.group(1), where
    assert "seq 2" in html and "edited" in html  # the problem as the CLI names it
    assert gw.access is not None and gw.monitoring is not None
    await gw.monitoring.recorder.drain()
    from keyguard.cli.support import cli_actor

    incidents = await gw.access.api.service.list_incidents(cli_actor())
    assert "audit_tampered" in {i.rule for i in incidents}


async def test_the_chains_verification_over_the_api(gw: Gateway) -> None:
    viewer, operator = await admin_token(gw, "viewer"), await admin_token(gw, "operator")
    url = gw.admin_url.rstrip("/") + "/admin/audit/verification"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, headers={"Authorization": f"Bearer {viewer}"}) as resp:
            assert resp.status == 403
        async with http.post(url) as resp:
            assert resp.status == 401
        async with http.post(url, headers={"Authorization": f"Bearer {operator}"}) as resp:
            assert resp.status == 202
            body = await resp.json()
        assert body["started"] is True and body["running"] is True
        deadline = time.monotonic() + 30
        while True:
            async with http.get(url, headers={"Authorization": f"Bearer {viewer}"}) as resp:
                assert resp.status == 200
                body = await resp.json()
            if body["last"] is not None:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    assert body["last"]["state"] == "verified" and body["last"]["records"] > 0


async def test_static_assets_are_a_fixed_list(client: ConsoleClient) -> None:
    for name in ("console.css", "console.js"):
        status, body, resp = await client.get(f"/console/static/{name}")
        assert status == 200 and body
        _assert_headers(resp)
    for name in ("..%2f__init__.py", "app.py", "%2e%2e%2fapp.py"):
        status, _, _ = await client.get(f"/console/static/{name}")
        assert status == 404


async def test_the_sign_in_page_has_no_inline_script_or_style(client: ConsoleClient) -> None:
    status, html, resp = await client.get("/sign-in")
    assert status == 200
    _assert_headers(resp)
    assert "<script>" not in html and "style=" not in html and "<style" not in html


async def test_an_operators_actions_are_the_services_audited_with_the_actor(
    client: ConsoleClient, gw: Gateway
) -> None:
    token = await admin_token(gw, "operator")
    events: list[Event] = []
    runtime(gw).events.subscribe(events.append)
    await client.sign_in(token)
    csrf = await client.csrf()
    status, html, _ = await client.post("/keys", {"app": "web", "expires": "30d", "csrf": csrf})
    assert status == 200
    secret = re.search(r'id="secret" readonly value="(kgk_[^"]+)"', html)
    assert secret is not None
    key_id = key_id_on(html)
    seen: list[str] = []
    for change in ("suspend", "resume", "rotate", "revoke"):
        status, page, _ = await client.get(f"/keys/{key_id}/{change}")
        assert status == 200 and f'action="/keys/{key_id}/{change}"' in page
        status, page, resp = await client.post(f"/keys/{key_id}/{change}", {"csrf": csrf})
        if change == "rotate":
            assert status == 200 and "old secret works until" in page
            rotated = re.search(r'id="secret" readonly value="(kgk_[^"]+)"', page)
            assert rotated is not None and rotated.group(1) != secret.group(1)
        else:
            assert status == 303 and resp.headers["Location"] == f"/keys/{key_id}"
        seen.append(page)
    record = await runtime(gw).keys.get(key_id)
    assert record.revoked_at is not None
    for path in PAGES + [f"/keys/{key_id}", "/audit?kind=admin"]:
        status, page, _ = await client.get(path)
        seen.append(page)
    # the secret was on the page that made it, and nowhere else; no event carries it
    assert not any(secret.group(1) in page for page in seen)
    assert token not in "".join(seen)
    done = [
        (e.actor, e.action)
        for e in events
        if isinstance(e, AdminAction) and e.action.startswith("keys.") and e.action != "keys.get"
    ]
    actor = done[0][0]
    assert actor.startswith("admin-token:")
    assert [a for _, a in done if a != "keys.list"] == [
        "keys.create", "keys.suspend", "keys.resume", "keys.rotate", "keys.revoke"
    ]  # fmt: skip
    assert {a for a, _ in done} == {actor}
    assert secret.group(1) not in repr(events)


async def test_a_session_is_known_to_every_replica_of_the_store(
    gw: Gateway, tmp_path: Path
) -> None:
    """Workers and replicas share the store: a session opened on one works on the others, and
    signing out on one ends it everywhere."""
    async with running_gateway(tmp_path, settings=gw.settings) as other:
        async with console_client(gw) as one:
            await one.sign_in(await admin_token(gw, "operator"))
            cookie = one.http.cookie_jar.filter_cookies(URL(one.origin))["kg_console"].value
            async with console_client(other) as two:
                two.http.cookie_jar.update_cookies({"kg_console": cookie})
                status, html, _ = await two.get("/keys")
                assert status == 200 and 'id="role">operator<' in html
                csrf = csrf_of(html)
                status, _, _ = await two.post("/keys", {"app": "web", "csrf": csrf})
                assert status == 200  # the CSRF token is the session's, wherever it is checked
                assert (await two.post("/sign-out", {"csrf": csrf}))[0] == 303
            status, _, resp = await one.get("/keys")
            assert status == 303 and resp.headers["Location"] == "/sign-in"


async def test_with_tls_on_the_admin_port_the_cookie_is_secure(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    files = ensure_certificates(tmp_path / "tls")
    tls = {"cert_file": str(files.server_cert), "key_file": str(files.server_key)}
    listen = {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0", "tls": tls}
    ca = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
    async with (
        console_gateway(tmp_path, emulator, listen=listen) as gateway,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ca)) as http,
    ):
        origin = gateway.admin_url.rstrip("/")
        assert origin.startswith("https://")
        token = await admin_token(gateway, "viewer")
        async with http.post(
            origin + "/sign-in",
            data={"token": token},
            headers={"Origin": origin},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            cookie = resp.headers["Set-Cookie"]
            assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert cookie.startswith("__Host-kg_console=") and "Path=/" in cookie
        assert "Domain" not in cookie


async def test_every_route_takes_its_role_from_an_endpoint_of_the_api(gw: Gateway) -> None:
    assert gw.access is not None and gw.access.console is not None
    console = gw.access.console
    assert len(console.guarded) >= 8 and console.guarded <= set(console.roles)
    assert console.role_of("POST", "/admin/keys") == "operator"
    assert console.role_of("GET", "/admin/nothing") == "admin"  # unknown: the highest role


@pytest.mark.parametrize(
    "query",
    [
        "since=0001-01-01T00:00:00%2B14:00",
        "until=9999-12-31T23:59:59-14:00",
        "since=yesterday",
        "since=99999999d",
        "kind=everything",
        "since=" + "9" * 5000,
    ],
)
async def test_a_bad_audit_search_is_a_400_page(
    client: ConsoleClient, gw: Gateway, query: str
) -> None:
    await client.sign_in(await admin_token(gw, "viewer"))
    status, html, resp = await client.get("/audit?" + query)
    assert status == 400 and "Refused" in html, (status, html[:300])
    _assert_headers(resp)


@pytest.mark.parametrize(
    "path",
    [
        "/keys/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/keys/AAAAAAAAAAAA",
        "/keys/AAAAAAAAAAAA/suspend",
        "/keys?app=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/incidents?status=%3Cscript%3E",
        "/?window=%3Cscript%3E",
    ],
)
async def test_hostile_addresses_are_answered_not_reflected(
    client: ConsoleClient, gw: Gateway, path: str
) -> None:
    await client.sign_in(await admin_token(gw, "operator"))
    status, html, resp = await client.get(path)
    assert status in (200, 400, 404), (status, html[:300])
    assert "<script>" not in html
    _assert_headers(resp)


@pytest.mark.parametrize(
    ("principal", "request_text"),
    [("nokind", "chat gpt-4o"), ("app:web", ""), ("app:web", "{not json"), ("x" * 300, "chat")],
)
async def test_a_bad_explain_form_is_a_400_page(
    client: ConsoleClient, gw: Gateway, principal: str, request_text: str
) -> None:
    await client.sign_in(await admin_token(gw, "viewer"))
    csrf = await client.csrf("/policy")
    form = {"principal": principal, "request": request_text, "csrf": csrf}
    status, html, resp = await client.post("/policy/explain", form)
    assert status == 400 and "Refused" in html, (status, html[:400])
    _assert_headers(resp)
