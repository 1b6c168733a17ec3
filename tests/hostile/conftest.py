"""One gateway for the whole hostile suite: Entra tokens from the local issuer, a policy with
caps, a source-network role and an expired role, trusted proxy 127.0.0.2 only, allowed hosts,
and keys in every state. The suite drives it over real sockets with raw aiohttp requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from multidict import CIMultiDict
from yarl import URL

from keyguard.azure_keys import generate_legacy_key
from keyguard.emulator import EmulatorConfig, RunningEmulator, start_emulator
from keyguard.events import Event
from keyguard.server import Gateway
from tests.support.emulators import API_VERSION
from tests.support.gateway import running_gateway, runtime
from tests.support.issuer import LocalIssuer, start_issuer

APP_ID = "11111111-1111-1111-1111-111111111111"  # the local issuer's default appid
AGENT_ID = "44444444-4444-4444-4444-444444444444"
NET_APP_ID = "66666666-6666-6666-6666-666666666666"
LONELY_ID = "77777777-7777-7777-7777-777777777777"
POLICY = f"""
apps:
  billing: {{entra_client_ids: ["{APP_ID}"]}}
  netapp: {{entra_client_ids: ["{NET_APP_ID}"]}}
agents:
  triage: {{entra_client_ids: ["{AGENT_ID}"], parent: billing}}
roles:
  chat-capped:
    operations: [chat]
    deployments: [gpt-4o-mini]
    max_output_tokens: 100
    max_prompt_chars: 2000
    streaming: false
  chat-from-office:
    operations: [chat]
    deployments: ["gpt-4o*"]
    source_networks: [198.51.100.0/24]
  embed-only:
    operations: [embeddings]
    deployments: ["text-embedding-*"]
  ended:
    operations: ["*"]
    deployments: ["*"]
    not_after: 2020-01-01T00:00:00Z
bindings:
  - {{name: billing-chat, role: chat-capped, subjects: ["app:billing", "app:keyapp"]}}
  - {{name: office-chat, role: chat-from-office, subjects: ["app:netapp", "app:officekeys"]}}
  - {{name: triage-embed, role: embed-only, subjects: ["agent:triage"]}}
  - {{name: old-contract, role: ended, subjects: ["app:legacy"]}}
"""
POLICY_NAMES = (
    "chat-capped",
    "chat-from-office",
    "embed-only",
    "billing-chat",
    "office-chat",
    "triage-embed",
    "old-contract",
)


@dataclass
class Sent:
    status: int
    body: Any
    request_id: str
    text: str


@dataclass
class Hostile:
    gateway: Gateway
    issuer: LocalIssuer
    upstream: RunningEmulator
    keys: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateway.proxy_url

    async def send(
        self,
        path: str,
        *,
        method: str = "POST",
        headers: list[tuple[str, str]] | dict[str, str] | None = None,
        json: Any = None,
        data: Any = None,
        local: str | None = None,
    ) -> Sent:
        connector = aiohttp.TCPConnector(local_addr=(local, 0) if local else None)
        hdrs = CIMultiDict(headers.items() if isinstance(headers, dict) else (headers or []))
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.request(
                method, URL(self.url + path, encoded=True), headers=hdrs, json=json, data=data
            ) as resp:
                text = await resp.text()
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                return Sent(resp.status, body, resp.headers.get("x-keyguard-request-id", "-"), text)


def chat(deployment: str = "gpt-4o-mini") -> str:
    return f"/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}"


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def hostile(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hostile]:
    tmp: Path = tmp_path_factory.mktemp("hostile")
    async with AsyncExitStack() as stack:
        issuer = await start_issuer(tmp / "issuer-tls")
        stack.push_async_callback(issuer.stop)
        upstream = await stack.enter_async_context(await start_emulator(EmulatorConfig()))
        access = {
            "entra": issuer.entra(algorithms=["RS256", "ES256"]),
            "trusted_proxies": ["127.0.0.2/32"],
            "allowed_hosts": ["127.0.0.1", "127.0.0.2", "localhost"],
        }
        gateway = await stack.enter_async_context(
            running_gateway(
                tmp,
                upstream,
                access=access,
                policy=POLICY,
                # every hostile request comes from this one address: the stuffing rule would
                # block it after twenty, and the suite checks each refusal on its own
                monitor={"respond": {"automatic": False}},
            )
        )
        harness = Hostile(gateway, issuer, upstream, secrets=list(upstream.keys()))
        rt = runtime(gateway)
        rt.events.subscribe(harness.events.append)
        now = datetime.now(UTC)
        for name, app in [
            ("valid", "keyapp"),
            ("office", "officekeys"),
            ("nobody", "nobody"),
            ("legacy", "legacy"),
        ]:
            harness.keys[name] = (await rt.keys.create(app, now=now))[1]
        revoked_record, harness.keys["revoked"] = await rt.keys.create("keyapp", now=now)
        await rt.keys.revoke(revoked_record.key_id, now=now)
        suspended_record, harness.keys["suspended"] = await rt.keys.create("keyapp", now=now)
        await rt.keys.suspend(suspended_record.key_id, now=now)
        _, harness.keys["expired"] = await rt.keys.create(
            "keyapp", now=now - timedelta(days=2), expires_in=timedelta(days=1)
        )
        legacy_azure = generate_legacy_key()
        await rt.vault.put("upstream/legacy-resource", legacy_azure)
        harness.keys["azure-legacy"] = legacy_azure
        await gateway.access.managed_keys.refresh()  # type: ignore[union-attr]
        harness.secrets += list(harness.keys.values())
        yield harness
