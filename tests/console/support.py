"""A gateway with its console, and a browser-less client of the console over a real socket:
sign in with an admin token, read pages, send forms with the page's CSRF token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from keyguard.admin.settings import AdminRole
from keyguard.cli.support import cli_actor
from keyguard.emulator import RunningEmulator
from keyguard.server import Gateway
from keyguard.wiring.access import open_admin_service
from tests.support.gateway import running_gateway, runtime

__all__ = ["ConsoleClient", "POLICY", "admin_token", "console_client", "console_gateway", "csrf_of"]

POLICY = """
roles:
  chat: {operations: [chat], deployments: [gpt-4o]}
bindings:
  - {name: web-chats, role: chat, subjects: ["app:web", "app:billing"]}
"""
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


async def admin_token(gateway: Gateway, role: AdminRole) -> str:
    service = await open_admin_service(runtime(gateway))
    return (await service.create_admin_token(cli_actor(), name=f"console-{role}", role=role))[1]


@asynccontextmanager
async def console_gateway(
    tmp: Path, emulator: RunningEmulator, **options: Any
) -> AsyncIterator[Gateway]:
    options.setdefault("policy", POLICY)
    options.setdefault("access", {"policy": {"managed": True}})
    async with running_gateway(tmp, emulator, **options) as gw:
        yield gw


@dataclass
class ConsoleClient:
    """One browser's worth of state: a cookie jar on one aiohttp session."""

    gateway: Gateway
    http: aiohttp.ClientSession

    @property
    def origin(self) -> str:
        return self.gateway.admin_url.rstrip("/")

    async def get(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.origin + path, allow_redirects=False) as resp:
            return resp.status, await resp.text(), resp

    async def post(
        self, path: str, form: dict[str, str], *, headers: dict[str, str] | None = None
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        sent = {"Origin": self.origin} if headers is None else headers
        async with self.http.post(
            self.origin + path, data=form, headers=sent, allow_redirects=False
        ) as resp:
            return resp.status, await resp.text(), resp

    async def sign_in(self, token: str) -> None:
        status, _, resp = await self.post("/sign-in", {"token": token})
        assert status == 303 and resp.headers["Location"] == "/", status

    async def csrf(self, path: str = "/keys") -> str:
        status, html, _ = await self.get(path)
        assert status == 200, (status, html[:300])
        return csrf_of(html)


@asynccontextmanager
async def console_client(gateway: Gateway) -> AsyncIterator[ConsoleClient]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield ConsoleClient(gateway, http)
