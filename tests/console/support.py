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
from keyguard.emulator.config import EmulatorUser
from keyguard.server import Gateway
from keyguard.wiring.access import open_admin_service
from tests.support.gateway import running_gateway, runtime

__all__ = [
    "ADMIN_AUDIENCE",
    "CLIENT_ID",
    "ConsoleClient",
    "ENTRA_USERS",
    "OPERATORS",
    "POLICY",
    "VIEWERS",
    "admin_token",
    "console_client",
    "console_gateway",
    "csrf_of",
    "entra_access",
]

POLICY = """
roles:
  chat: {operations: [chat], deployments: [gpt-4o]}
bindings:
  - {name: web-chats, role: chat, subjects: ["app:web", "app:billing"]}
"""
CLIENT_ID = "00000000-0000-4000-8000-00000000c0c0"  # the console's app registration
ADMIN_AUDIENCE = "api://keyguard-admin"
VIEWERS = "00000000-0000-4000-8000-0000000000a1"
OPERATORS = "00000000-0000-4000-8000-0000000000a2"
#: the emulator's users: a viewer, an operator, and a member of no admin group
ENTRA_USERS = {
    "vera": EmulatorUser(groups=(VIEWERS,)),
    "otto": EmulatorUser(groups=(VIEWERS, OPERATORS)),
    "nora": EmulatorUser(groups=("00000000-0000-4000-8000-0000000000ff",)),
}


def entra_access(idp: RunningEmulator) -> dict[str, Any]:
    """An ``access`` config section whose console signs in with Entra ID at ``idp`` (an
    emulator serving HTTPS), viewers and operators by group."""
    tenant = idp.config.tenant_id
    return {
        "policy": {"managed": True},
        "entra": {
            "tenants": [tenant],
            "audiences": ["api://keyguard-proxy"],
            "jwks_uri": f"{idp.url}/{tenant}/discovery/v2.0/keys",
            "ca_file": str(idp.ca_file),
        },
        "admin": {
            "entra_groups": {VIEWERS: "viewer", OPERATORS: "operator"},
            "entra_audiences": [ADMIN_AUDIENCE],
            "console_client_id": CLIENT_ID,
            "console_authority": f"{idp.url}/{tenant}/v2.0",
        },
    }


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

    async def get(
        self, path: str, *, headers: dict[str, str] | None = None
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(
            self.origin + path, headers=headers, allow_redirects=False
        ) as resp:
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
