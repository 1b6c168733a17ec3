"""Canaries: known secrets planted, every kind of traffic run, then every output searched.

The upstream Azure key, a Keyguard key, a revoked Keyguard key and the master key are planted.
After successes, streams and every kind of denial (including requests that carry the secrets in
the wrong places), no log record, response body or header, and no byte of the database files
may contain any of them, whole or as their secret part.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.support.emulators import API_VERSION
from tests.support.logs import LogCapture
from tests.support.stored import stored_bytes

from .harness import GatewayHarness

CHAT = "/openai/deployments/gpt-4o/chat/completions?api-version=" + API_VERSION
MESSAGES = [{"role": "user", "content": "hello"}]


async def _traffic(gateway: GatewayHarness, key: str, revoked: str, azure_key: str) -> list[str]:
    seen: list[str] = []
    bad_checksum = key[:-1] + ("0" if key[-1] != "0" else "1")
    attempts: list[tuple[str, dict[str, str], Any]] = [
        (CHAT, {"api-key": key}, {"messages": MESSAGES}),
        (
            CHAT,
            {"api-key": key},
            {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
        ),
        (
            "/openai/v1/embeddings",
            {"Authorization": f"Bearer {key}"},
            {"model": "text-embedding-3-small", "input": key},
        ),
        (CHAT, {"api-key": revoked}, {"messages": MESSAGES}),
        (CHAT, {"api-key": bad_checksum}, {"messages": MESSAGES}),
        (CHAT, {"api-key": key, "Authorization": f"Bearer {revoked}"}, {"messages": MESSAGES}),
        (CHAT + "&api-key=" + key, {}, {"messages": MESSAGES}),
        (CHAT, {"api-key": azure_key}, {"messages": MESSAGES}),
        (CHAT, {"Authorization": f"Bearer {azure_key}"}, {"messages": MESSAGES}),
        (CHAT, {"api-key": key + "x"}, {"messages": MESSAGES}),
        (CHAT, {"api-key": key}, "{broken json " + key),
        (
            "/openai/deployments/" + key + "/chat/completions?api-version=" + API_VERSION,
            {"api-key": key},
            {"messages": MESSAGES},
        ),
        ("/openai/v1/chat/completions", {"api-key": key}, {"model": key, "messages": MESSAGES}),
        ("/openai/" + key, {"api-key": key}, {}),
    ]
    async with aiohttp.ClientSession() as http:
        for path, headers, body in attempts:
            kwargs: dict[str, Any] = (
                {"json": body}
                if not isinstance(body, str)
                else {"data": body, "headers": {**headers, "Content-Type": "application/json"}}
            )
            kwargs.setdefault("headers", headers)
            async with http.post(gateway.url + path, **kwargs) as resp:
                seen.append(f"{resp.status} {dict(resp.headers)} {await resp.text()}")
    return seen


async def test_no_secret_reaches_logs_bodies_or_rows(
    gateway: GatewayHarness, tmp_path: Path, logs: LogCapture
) -> None:
    key_id, key = await gateway.new_key("canary-app")
    revoked_id, revoked = await gateway.new_key("canary-app")
    await gateway.revoke(revoked_id)
    azure_key = gateway.emulator.keys()[0]
    responses = await _traffic(gateway, key, revoked, azure_key)
    await gateway.gateway.stop()  # its last log lines and rows included

    master = (tmp_path / "master.key").read_text().strip()
    canaries = {
        "upstream key": azure_key,
        "second upstream key": gateway.emulator.keys()[1],
        "keyguard key": key,
        "keyguard key secret part": key[16:48],
        "revoked key": revoked,
        "revoked key secret part": revoked[16:48],
        "master key": master,
    }
    db_bytes = stored_bytes(tmp_path)
    with closing(sqlite3.connect(tmp_path / "keyguard.db")) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        rows = [repr(row) for t in tables for row in conn.execute(f'select * from "{t}"')]

    assert any('"status":200' in line for line in logs.lines), "no access log was captured"
    for line in logs.json_lines:  # as the gateway writes them: one object per line, one schema
        entry = orjson.loads(line)
        assert "\n" not in line and {"ts", "level", "logger", "msg"} <= set(entry), line
        if entry["logger"] == "keyguard.access":
            assert entry["request_id"], line
    assert any(line.startswith("401") for line in responses)
    assert key_id in "\n".join(logs.lines)  # the public id is logged, so the search is real
    for name, secret in canaries.items():
        for where, text in (
            ("log", "\n".join(logs.lines)),
            ("JSON log", "\n".join(logs.json_lines)),
            ("text log", "\n".join(logs.text_lines)),
            ("response", "\n".join(responses)),
            ("row", "\n".join(rows)),
        ):
            assert secret not in text, f"{name} found in a {where}"
        assert secret.encode() not in db_bytes, f"{name} found in the database files"


def _fragments(secret: str, width: int = 8) -> set[str]:
    return {secret[i : i + width] for i in range(len(secret) - width + 1)}


async def test_a_key_joined_to_the_api_version_by_a_semicolon_is_not_echoed(
    gateway: GatewayHarness, logs: LogCapture
) -> None:
    """``?api-version=2024-10-21;api-key=<key>`` is one query value that holds a key: it is
    refused, and no part of the key (not its id, not the start of its secret) is quoted back
    or logged, whether or not the request also carries a valid key in its header."""
    _, key = await gateway.new_key("canary-app")
    _, header_key = await gateway.new_key("canary-app")
    base = "/openai/deployments/gpt-4o/chat/completions"
    first = len(logs.lines)  # the lines before are the keys' creation, which names their ids
    seen: list[str] = []
    async with aiohttp.ClientSession() as http:
        for query, headers in (
            (f"api-version={API_VERSION};api-key={key}", {}),
            (f"api-version={API_VERSION};api-key={key}", {"api-key": header_key}),
            (f"api-version={API_VERSION}%3Bapi-key%3D{key}", {"api-key": header_key}),
            (f"api-version=preview;api-key={key}", {"api-key": header_key}),
        ):
            path = base if "preview" not in query else "/openai/v1/chat/completions"
            async with http.post(
                f"{gateway.url}{path}?{query}",
                json={"model": "gpt-4o", "messages": MESSAGES},
                headers=headers,
            ) as resp:
                body = await resp.text()
                assert resp.status in (400, 401), (resp.status, body)
                seen.append(f"{resp.status} {dict(resp.headers)} {body}")
    assert all("api-version" in s or "credential" in s.lower() for s in seen), seen
    await gateway.gateway.stop()  # its last log lines included
    fragments = _fragments(key[len("kgk_") :])  # the id and every stretch of the secret
    for where, text in (
        ("response", "\n".join(seen)),
        ("log", "\n".join(logs.lines[first:])),
        ("JSON log", "\n".join(logs.json_lines[first:])),
    ):
        found = sorted(f for f in fragments if f in text)
        assert not found, f"part of the key found in a {where}: {found[:3]}"
