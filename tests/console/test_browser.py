"""The console in a real browser (Chromium under Playwright) against a real gateway and the
Azure emulator: sign in, create a key, use it through the official ``openai`` SDK and see its
usage move, suspend it and see it refused, present a raw Azure key and see the incident, a
viewer who can change nothing, and an operator signing in with Entra ID. Every page is saved
as a screenshot (tests/console/browser.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest
from playwright.async_api import BrowserContext, Dialog, Page, expect

from keyguard.emulator import EmulatorConfig, RunningEmulator
from keyguard.emulator.signin import user_oid
from keyguard.limits.windows import window
from keyguard.server import Gateway
from tests.support.gateway import azure_client, new_key, runtime
from tests.support.settings import DEPLOYMENTS

from .browser import chromium, screenshot
from .support import ENTRA_USERS, admin_token, console_gateway, entra_access

DECOY = "honey"  # a decoy app: any use of one of its keys is an incident
# The gateway runs on the real clock: the quotas and the budget count by the month, so that
# their window practically never turns while the test reads them (a minute's may).
LIMITS = {
    "rules": [
        {"scope": "key", "tokens_per_month": 20_000, "rpm": 50},
        {"scope": "app", "tokens_per_month": 100_000, "rpm": 500},
    ],
    "budgets": [{"scope": "app", "per_month": "5"}],
    "prices": {
        "gpt-4o": {"input": "2.5", "output": "10"},
        **{model: {"input": 0, "output": 0} for model in DEPLOYMENTS if model != "gpt-4o"},
    },
}


@pytest.fixture
async def gw(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[Gateway]:
    monitor = {"detect": {"decoy_apps": [DECOY]}}
    async with console_gateway(tmp_path, emulator, limits=LIMITS, monitor=monitor) as gateway:
        yield gateway


@pytest.fixture
async def problems() -> list[str]:
    return []


@pytest.fixture
async def browser(tmp_path: Path, problems: list[str]) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path / "profile", problems) as context:
        yield context
    assert not problems, problems  # no CSP violation, no script error on any page


async def chat(gw: Gateway, key: str) -> Any:
    async with azure_client(gw, key) as client:
        return await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}], max_tokens=5
        )


async def drain(gw: Gateway) -> None:
    """The audit records and incidents of what was sent, written (the recorder runs after
    the answer)."""
    assert gw.monitoring is not None
    await gw.monitoring.recorder.drain()


async def sign_in(page: Page, gw: Gateway, token: str) -> None:
    await page.goto(gw.admin_url.rstrip("/") + "/keys")
    await expect(page).to_have_url(gw.admin_url.rstrip("/") + "/sign-in")
    await page.fill("input[name=token]", token)
    await page.click("button[type=submit]")
    await expect(page.locator("#role")).to_be_visible()


async def reload_until(
    page: Page,
    selector: str,
    text: str,
    within: float = 15.0,
    *,
    day: tuple[int, int] | None = None,
) -> None:
    """Reload ``page`` until ``selector``'s text is ``text`` (within ``within`` seconds). With
    ``day`` (a UTC day's window), a text that is the day's spend: if that day has ended once
    the page was read, the page shows the next day's, without what was sent before: no wait."""
    deadline = time.monotonic() + within
    while (await page.locator(selector).text_content() or "").strip() != text:
        if day is not None and window("day", time.time()) != day:
            return
        assert time.monotonic() < deadline, f"{selector} never showed {text!r}"
        await asyncio.sleep(0.1)
        await page.reload()


async def meter_values(page: Page) -> dict[str, float]:
    """Each usage bar's label and value on a key's page."""
    rows = await page.locator("#key-usage tr.bar").evaluate_all(
        "rows => rows.map(r => [r.dataset.label, r.querySelector('meter').value])"
    )
    return {str(label): float(value) for label, value in rows}


async def test_an_operator_runs_a_key_from_creation_to_incident(
    gw: Gateway, browser: BrowserContext
) -> None:
    base = gw.admin_url.rstrip("/")
    page = await browser.new_page()
    await page.goto(base + "/")
    await expect(page).to_have_url(base + "/sign-in")
    await screenshot(page, "sign-in")
    await page.fill("input[name=token]", "kga_not-a-token")
    await page.click("button[type=submit]")
    await expect(page.locator("#error")).to_contain_text("not valid")
    await page.fill("input[name=token]", await admin_token(gw, "admin"))
    await page.click("button[type=submit]")
    await expect(page.locator("#role")).to_have_text("admin")

    # create a key: the secret shown once, copied with the button
    await page.goto(base + "/keys")
    await page.fill("#create-key input[name=app]", "web")
    await page.fill("#create-key input[name=description]", "the storefront")
    await page.click("#create-key button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Key created")
    secret = await page.locator("#secret").input_value()
    key_id = (await page.locator("#key-id").text_content() or "").strip()
    assert secret.startswith("kgk_") and key_id in secret
    await browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    await page.click("button.copy")
    await expect(page.locator("#copied")).to_have_text("copied")
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    await screenshot(page, "key-created", hide="#secret")

    # its usage moves as the openai SDK uses it
    await page.goto(f"{base}/keys/{key_id}")
    await expect(page.locator("#key-state")).to_have_text("active")
    before = await meter_values(page)
    assert len(before) >= 5 and not any(before.values()), before
    await expect(page.locator("#key-usage .spend .requests")).to_have_text("0")
    month, day = window("month", time.time()), window("day", time.time())
    for _ in range(3):
        answer = await chat(gw, secret)
        assert answer.choices[0].message.content
    await drain(gw)
    # the audit is written in batches; the spend shown is the UTC day's
    await reload_until(page, "#key-usage .spend .requests", "3", day=day)
    after = await meter_values(page)
    monthly = {label: used for label, used in after.items() if label.endswith("per month")}
    assert after.keys() == before.keys() and len(monthly) == 3, after  # tokens and the budget
    if window("month", time.time()) == month:  # read in the month the requests counted in
        assert all(used > 0 for used in monthly.values()), after  # (a minute's may not be)
    await screenshot(page, "key")
    await page.goto(base + "/keys?app=web")
    await expect(page.locator(f"tr[data-key='{key_id}'] .state")).to_have_text("active")
    await reload_until(page, "#app-usage .spend .requests", "3", day=day)
    await screenshot(page, "keys")

    # suspend it (after a confirmation): refused at once
    await page.goto(f"{base}/keys/{key_id}")
    await page.click("text=Suspend…")
    await expect(page.locator("h1")).to_contain_text("Suspend key")
    await screenshot(page, "confirm")
    await page.click("#confirm button[type=submit]")
    await expect(page.locator("#key-state")).to_have_text("suspended")
    with pytest.raises(openai.APIStatusError) as refused:
        await chat(gw, secret)
    assert refused.value.status_code in (401, 403)
    await page.click("text=Resume…")
    await page.click("#confirm button[type=submit]")
    await expect(page.locator("#key-state")).to_have_text("active")
    assert (await chat(gw, secret)).choices

    # a detection: a decoy key presented to the proxy is an incident, acknowledged and
    # resolved here
    _, decoy = await new_key(gw, DECOY)
    with pytest.raises(openai.AuthenticationError):
        await chat(gw, decoy)
    await drain(gw)
    await page.goto(base + "/incidents")
    row = page.locator("tr[data-rule='decoy']")
    await expect(row).to_have_count(1)
    await expect(row.locator(".status .state")).to_have_text("open")
    await expect(row.locator(".seen")).to_contain_text("1×")
    # acknowledged: it stays so when the decoy is used again, and counts the repeat
    await row.locator("button.acknowledge").click()
    await expect(row.locator(".status .state")).to_have_text("acknowledged")
    await expect(row.locator(".status .acknowledged")).to_contain_text("by admin-token:")
    await expect(row.locator("button.acknowledge")).to_have_count(0)
    with pytest.raises(openai.AuthenticationError):
        await chat(gw, decoy)
    await drain(gw)
    await reload_until(page, "tr[data-rule='decoy'] .seen .count", "2×")
    await expect(row.locator(".status .state")).to_have_text("acknowledged")
    await screenshot(page, "incidents")
    page.once("dialog", _accept)
    await row.locator("button.resolve").click()
    await expect(page.locator("tr[data-rule='decoy'] .status .state")).to_have_text("resolved")

    # the overview charts what happened; the audit log has every action, with its actor
    await page.goto(base + "/?window=hour")
    columns = await page.locator("#chart-requests rect").evaluate_all(
        "rs => rs.map(r => Number(r.getAttribute('height')))"
    )
    assert sum(1 for h in columns if h > 0) >= 1, columns
    await expect(page.locator("#top-keys")).to_contain_text(key_id)
    await screenshot(page, "overview")
    await page.goto(base + f"/audit?kind=admin&key={key_id}")
    records = page.locator("#audit-records")
    for action in ("keys.create", "keys.suspend", "keys.resume"):
        await expect(records).to_contain_text(action)
    await expect(page.locator("#verification")).to_contain_text("Every record shown matches")
    await reload_until(page, "#chain-state", "verified")  # the whole chain, in the background
    await expect(page.locator("#verify-now button")).to_be_enabled()
    await screenshot(page, "audit")
    await page.goto(base + "/policy")
    await page.fill("#explain input[name=principal]", "app:web")
    await page.fill("#explain input[name=request]", "chat gpt-4o max_tokens=50")
    await page.click("#explain button[type=submit]")
    await expect(page.locator("#explanation")).to_contain_text("Allowed by binding web-chats")
    await screenshot(page, "policy")

    # sign out: the console is closed again
    await page.click("header button[type=submit]")
    await expect(page).to_have_url(base + "/sign-in")
    await page.goto(base + "/keys")
    await expect(page).to_have_url(base + "/sign-in")


async def _accept(dialog: Dialog) -> None:
    assert "Resolve" in dialog.message
    await dialog.accept()


async def test_a_viewer_sees_everything_and_changes_nothing(
    gw: Gateway, browser: BrowserContext
) -> None:
    base = gw.admin_url.rstrip("/")
    key_id, _ = await new_key(gw, "web")
    page = await browser.new_page()
    await sign_in(page, gw, await admin_token(gw, "viewer"))
    await expect(page.locator("#role")).to_have_text("viewer")
    await page.goto(base + "/keys")
    await expect(page.locator("#create-key")).to_have_count(0)
    await page.goto(f"{base}/keys/{key_id}")
    await expect(page.locator(".actions")).to_have_count(0)
    # typing the confirmation's address, or posting its form with the page's own CSRF token
    await page.goto(f"{base}/keys/{key_id}/suspend")
    await expect(page.locator("#error")).to_contain_text("needs the operator role")
    await page.goto(f"{base}/keys/{key_id}")
    status = await page.evaluate(
        """async (keyId) => {
            const csrf = document.querySelector("input[name=csrf]").value;
            const body = new URLSearchParams({csrf});
            const r = await fetch(`/keys/${keyId}/suspend`, {method: "POST", body});
            return r.status;
        }""",
        key_id,
    )
    assert status == 403
    await screenshot(page, "viewer-key")
    record = await runtime(gw).keys.get(key_id)
    assert record.suspended_at is None and record.revoked_at is None
    assert await runtime(gw).keys.list(app="web", now=datetime.now(UTC)) == [record]


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(users=ENTRA_USERS, default_user="otto")  # who picks their account


async def test_an_operator_signs_in_with_entra_id(
    tmp_path: Path, emulator: RunningEmulator, tls_emulator: RunningEmulator, problems: list[str]
) -> None:
    """The browser follows the real redirects: to the identity provider and back (the
    ``SameSite=Lax`` pre-auth cookie is sent on the way back) and on to the console (the
    ``Strict`` session cookie is sent by the page's own navigation)."""
    access = entra_access(tls_emulator)
    async with (
        console_gateway(tmp_path, emulator, access=access) as gw,
        chromium(tmp_path / "profile", problems, ignore_https_errors=True) as browser,
    ):
        page = await browser.new_page()
        base = gw.admin_url.rstrip("/")
        await page.goto(base + "/keys")
        await expect(page).to_have_url(base + "/sign-in")
        await page.click("#entra-sign-in")
        await expect(page).to_have_url(base + "/")
        await expect(page.locator("#role")).to_have_text("operator")
        oid = user_oid(tls_emulator.state, "otto")
        await expect(page.locator("#actor")).to_have_text(f"entra:{oid}")
        await page.goto(base + "/keys")
        await expect(page.locator("#create-key")).to_have_count(1)
        await screenshot(page, "entra-operator-keys")
    assert not problems, problems
