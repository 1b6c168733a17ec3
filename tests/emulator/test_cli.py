"""``run_emulator_cli`` in a real subprocess: banner, serving, clean stop on SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp

from tests.support.emulators import CHAT_PATH

from .conftest import MESSAGES

SCRIPT = (
    "import sys; from keyguard.emulator import run_emulator_cli; "
    "sys.exit(run_emulator_cli(port=0, config=sys.argv[1], legacy_keys=True))"
)


async def test_cli_prints_endpoint_and_keys_and_stops_on_sigint(tmp_path: Path) -> None:
    config = tmp_path / "emulator.yaml"
    config.write_text("region: North Central US\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    fields: dict[str, str] = {}
    try:
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert line, "the emulator exited before printing its banner"
            if line.startswith("Press Ctrl-C"):
                break
            name, _, value = line.strip().partition(":")
            fields[name] = value.strip()
        url, key1 = fields["endpoint"], fields["key1"]
        assert len(key1) == 32 and len(fields["key2"]) == 32  # --legacy-keys
        async with aiohttp.ClientSession() as http:
            async with http.post(
                url + CHAT_PATH, json={"messages": MESSAGES}, headers={"api-key": key1}
            ) as response:
                assert response.status == 200
                assert response.headers["x-ms-region"] == "North Central US"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
