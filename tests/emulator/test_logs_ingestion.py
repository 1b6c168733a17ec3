"""The emulator's Azure Monitor Logs Ingestion endpoint (what Microsoft Sentinel reads): a
hostile or careless caller is refused as Azure refuses it (no token or one for another
audience, another api-version, a body that is not a JSON array of objects, over 1 MB
compressed or inflated, a compression bomb, a broken gzip stream), nothing refused is kept;
faults (429 with Retry-After) and the rows kept over the control endpoints. The real SDK's
calls: tests/audit/test_sentinel.py."""

from __future__ import annotations

import gzip
import io
import ssl

import aiohttp
import orjson

from keyguard.emulator import issue_token
from keyguard.emulator.logs_ingestion import LOGS_KEY, MAX_BODY_BYTES
from tests.support.emulators import AzureEmulator

RULE = "dcr-" + "0123456789abcdef" * 2
STREAM = "Custom-KeyguardAudit_CL"
PATH = f"/dataCollectionRules/{RULE}/streams/{STREAM}?api-version=2023-01-01"


async def test_the_endpoint_refuses_what_azure_refuses(azure_emulator: AzureEmulator) -> None:
    context = ssl.create_default_context(cafile=azure_emulator.ca_file)
    url = azure_emulator.url + PATH
    right = issue_token(azure_emulator.state, "https://monitor.azure.com")["access_token"]
    wrong = issue_token(azure_emulator.state, "https://cognitiveservices.azure.com")
    bomb = gzip.compress(b"[" + b" " * (50 * MAX_BODY_BYTES) + b"]")  # inflates to 50 MB
    assert len(bomb) < MAX_BODY_BYTES
    calls: list[tuple[str, dict[str, str], bytes, int, str]] = [
        (url, {"Authorization": "Basic dXNlcjpwdw=="}, b"[]", 401, "bearer token is missing"),
        (url, {"Authorization": f"Bearer {wrong['access_token']}"}, b"[]", 401, "audience"),
        (url, {"Authorization": "Bearer not-a-token"}, b"[]", 401, "not valid"),
        (url.replace("2023-01-01", "2021-11-01-preview"), {}, b"[]", 400, "api-version"),
        (url, {}, b'{"a": 1}', 400, "JSON array of objects"),
        (url, {}, b"[1, 2]", 400, "JSON array of objects"),
        (url, {}, b"[{]", 400, "not valid JSON"),
        (url, {}, b"[" + b" " * MAX_BODY_BYTES + b"]", 413, "RequestEntityTooLarge"),
        (url, {"Content-Encoding": "gzip"}, bomb, 413, "RequestEntityTooLarge"),
        (url, {"Content-Encoding": "gzip"}, b"\x1f\x8bnot gzip", 400, "gzip"),
        (url, {"Content-Encoding": "x-snappy"}, b"[]", 415, "x-snappy"),
    ]
    async with aiohttp.ClientSession() as http:
        for target, extra, body, status, words in calls:
            headers = {"Authorization": f"Bearer {right}", **extra}
            data = io.BytesIO(body)
            async with http.post(target, data=data, headers=headers, ssl=context) as response:
                text = await response.text()
                assert response.status == status, (target, extra, text)
                assert words in text and orjson.loads(text)["error"]["code"]
        fine = gzip.compress(orjson.dumps([{"Line": "x"}]))
        headers = {"Authorization": f"Bearer {right}", "Content-Encoding": "gzip"}
        async with http.post(url, data=fine, headers=headers, ssl=context) as response:
            assert response.status == 204
    logs = azure_emulator.app[LOGS_KEY]
    assert logs.rows(RULE, STREAM) == [{"Line": "x"}]  # nothing refused was kept
    assert logs.accepted == 1 and logs.calls == len(calls) + 1


async def test_faults_and_the_rows_kept_over_the_control_endpoints(
    azure_emulator: AzureEmulator,
) -> None:
    context = ssl.create_default_context(cafile=azure_emulator.ca_file)
    control = {"x-emulator-token": azure_emulator.state.config.control_token}
    base = azure_emulator.url + "/_emulator/logs-ingestion"
    token = issue_token(azure_emulator.state, "https://monitor.azure.com")["access_token"]
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/faults", json={"status": 429}, ssl=context) as response:
            assert response.status == 401  # no control token
        fault = {"status": 429, "retry_after": 7, "count": 1}
        async with http.post(base + "/faults", json=fault, headers=control, ssl=context) as r:
            assert r.status == 201
        async with http.post(base + "/faults", json={"status": 200}, headers=control,
                             ssl=context) as r:  # fmt: skip
            assert r.status == 400
        auth = {"Authorization": f"Bearer {token}"}
        for expected in (429, 204):
            async with http.post(azure_emulator.url + PATH, json=[{"n": 1}], headers=auth,
                                 ssl=context) as response:  # fmt: skip
                assert response.status == expected
                if expected == 429:
                    assert response.headers["Retry-After"] == "7"
        async with http.get(base + "/received", headers=control, ssl=context) as response:
            assert (await response.json())["received"] == {f"{RULE}/{STREAM}": [{"n": 1}]}


async def test_an_identity_without_the_role_and_an_unknown_stream_are_refused(
    azure_emulator: AzureEmulator,
) -> None:
    context = ssl.create_default_context(cafile=azure_emulator.ca_file)
    logs = azure_emulator.app[LOGS_KEY]
    logs.publishers = frozenset({"11111111-2222-3333-4444-555555555555"})
    logs.rules = {RULE: frozenset({"Custom-Other_CL"})}
    token = issue_token(azure_emulator.state, "https://monitor.azure.com")["access_token"]
    publisher = issue_token(
        azure_emulator.state, "https://monitor.azure.com", "11111111-2222-3333-4444-555555555555"
    )["access_token"]
    async with aiohttp.ClientSession() as http:
        for bearer, status, code in ((token, 403, "OperationFailed"), (publisher, 404, "NotFound")):
            headers = {"Authorization": f"Bearer {bearer}"}
            async with http.post(azure_emulator.url + PATH, json=[{"n": 1}], headers=headers,
                                 ssl=context) as response:  # fmt: skip
                assert response.status == status
                assert (await response.json())["error"]["code"] == code
    assert logs.rows(RULE, STREAM) == [] and logs.accepted == 0
