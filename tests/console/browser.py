"""The browser the console's end-to-end tests drive: the distribution's Chromium (installed by
``scripts/setup --dev``) under Playwright, headless, with a fresh profile and no network
features of its own; nothing is downloaded when the tests run. Screenshots go to
``test-artifacts/console/`` (ignored by git); docs/console.md shows copies of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import BrowserContext, Page, async_playwright

__all__ = ["ARTIFACTS", "chromium", "screenshot"]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


@asynccontextmanager
async def chromium(
    profile: Path, problems: list[str], *, ignore_https_errors: bool = False
) -> AsyncIterator[BrowserContext]:
    """A fresh Chromium profile in ``profile``; every Content-Security-Policy violation and
    script error of its pages is appended to ``problems``. ``ignore_https_errors`` lets it
    open the emulator's HTTPS pages (its throw-away CA is not in the profile)."""
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: run scripts/setup --dev (it installs Debian's chromium)"
    )
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 820},
            ignore_https_errors=ignore_https_errors,
        )

        def watch(page: Page) -> None:
            page.on(
                "console",
                lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.on("pageerror", lambda e: problems.append(str(e)))

        context.on("page", watch)
        for page in context.pages:
            watch(page)
        try:
            yield context
        finally:
            await context.close()


async def screenshot(page: Page, name: str, *, hide: str | None = None) -> Path:
    """A screenshot of the page as ``test-artifacts/console/NAME.png`` (``hide``: a selector
    whose elements are masked, such as a secret)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    mask = [page.locator(hide)] if hide else []
    await page.screenshot(path=str(path), mask=mask)  # the window, not the whole page: small
    return path
