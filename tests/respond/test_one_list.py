"""One list of incidents: the detectors' findings and every security event raised elsewhere (a
raw Azure key presented, a budget's soft threshold, an expiring key, ...) are in
``/admin/alerts`` and ``keyguard alerts list``, with the response taken."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from keyguard.cli.main import cli
from keyguard.cli.support import cli_actor
from keyguard.emulator.server import RunningEmulator
from keyguard.events import SecurityEvent
from tests.integration.harness import harnessed
from tests.support.settings import keyguard_settings, upstream, write_config


async def test_every_kind_of_incident_is_in_one_list(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    decoy_id = "DECOYDECOY01"
    monitor = {"detect": {"decoy_key_ids": [decoy_id]}}
    async with harnessed(tmp_path, emulator, monitor=monitor) as gw:
        key_id, key = await gw.new_key("budgeted")
        rt = gw.runtime
        now = datetime.now(UTC)
        rt.events.emit(
            SecurityEvent(now, "budget_soft_threshold", "medium", "The app budget passed 80 %.",
                          key_id=key_id, app="budgeted")
        )  # fmt: skip
        rt.events.emit(
            SecurityEvent(now, "key_expiring", "low", "Key expires soon.", key_id=key_id)
        )
        upstream_key = gw.emulator.keys()[0]
        for presented in (upstream_key, "kgk_" + decoy_id + "x" * 38):
            client = gw.azure(presented)
            async with client:
                with pytest.raises(openai.APIStatusError):
                    await client.chat.completions.create(
                        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
                    )
        monitoring = gw.gateway.monitoring
        assert monitoring is not None
        await monitoring.recorder.drain()
        assert gw.gateway.access is not None
        service = gw.gateway.access.api.service
        listed = await service.list_incidents(cli_actor())
    rules = {i.rule for i in listed}
    assert {"budget_soft_threshold", "key_expiring", "raw_azure_key"} <= rules, rules
    raw = next(i for i in listed if i.rule == "raw_azure_key")
    assert raw.evidence["upstream"] == "emulator"  # the incident names the upstream
    assert raw.count >= 1 and upstream_key not in json.dumps(raw.to_json())
    config = write_config(
        tmp_path,
        keyguard_settings(tmp_path, upstreams=[upstream(gw.emulator.url)], monitor=monitor),
    )
    args = ["alerts", "list", "--json", "-c", str(config)]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args)
    assert result.exit_code == 0, result.output
    assert rules <= {i["rule"] for i in json.loads(result.output)}
