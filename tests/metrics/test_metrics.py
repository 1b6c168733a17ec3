"""Prometheus metrics: the right series, bounded labels, no secret; served on the admin port."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from keyguard.core.observation import Observation
from keyguard.emulator.server import RunningEmulator
from keyguard.metrics.registry import BoundedLabel, GatewayMetrics
from tests.support.gateway import azure_client, new_key, running_gateway


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def series(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def obs(**kw: object) -> Observation:
    base: dict[str, object] = {
        "at": 0.0,
        "key_id": "KEYAAAAAAAA1",
        "app": "billing",
        "operation": "chat",
        "deployment": "gpt-4o",
        "status": 200,
        "upstream_status": 200,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "cached_tokens": 64,
        "cost": 0.5,
        "latency_ms": 250.0,
        "upstream_ms": 240.0,
    }
    base.update(kw)
    return Observation(**base)  # type: ignore[arg-type]


def test_requests_tokens_cost_and_latencies() -> None:
    m = GatewayMetrics(["gpt-4o"])
    m.observe(obs())
    m.observe(
        obs(
            status=429,
            upstream_status=0,
            reason="tpm_exceeded",
            prompt_tokens=0,
            completion_tokens=0,
            cached_tokens=0,
            cost=None,
        )
    )
    m.observe(
        obs(
            status=401,
            key_id=None,
            app=None,
            deployment=None,
            upstream_status=0,
            reason="unknown_key",
            prompt_tokens=0,
            completion_tokens=0,
            cost=None,
        )
    )
    m.count(m.detections, "velocity", "high")
    body, ctype = m.render(None)
    assert ctype.startswith("text/plain")
    got = samples(body.decode())
    ad = {"app": "billing", "deployment": "gpt-4o"}
    op = {"gen_ai_operation_name": "chat"}
    assert got[series("keyguard_requests_total", **ad, **op, code="200")] == 1
    for kind, n in (("input", 100), ("output", 20), ("cached_input", 64)):
        assert got[series("keyguard_tokens_total", **ad, gen_ai_token_type=kind)] == n
    assert got[series("keyguard_cost_total", **ad)] == 0.5
    assert got[series("keyguard_limit_refusals_total", **ad, reason="tpm_exceeded")] == 1
    assert got[series("keyguard_auth_failures_total", reason="unknown_key")] == 1
    assert got[series("keyguard_detections_total", rule="velocity", severity="high")] == 1
    model = {"gen_ai_request_model": "gpt-4o"}
    assert got[series("gen_ai_client_operation_duration_seconds_count", **op, **model)] == 1
    overhead = got[series("keyguard_gateway_overhead_seconds_sum", **op)]
    assert abs(overhead - (0.010 + 0.25 + 0.25)) < 1e-6  # 10 ms + two refused requests
    usage = series("gen_ai_client_token_usage_count", **op, **model, gen_ai_token_type="input")
    assert got[usage] == 1


def test_label_values_are_bounded() -> None:
    label = BoundedLabel(2)
    assert [label(v) for v in ("a", "b", "c", "a", "Bad Value!")] == [
        "a",
        "b",
        "other",
        "a",
        "other",
    ]
    m = GatewayMetrics(["gpt-4o"], max_apps=3)
    for i in range(10):
        m.observe(obs(app=f"app{i}", deployment="not-configured"))
    text = m.render(None)[0].decode()
    assert 'app="app3"' not in text and 'app="other"' in text
    assert "not-configured" not in text and "KEYAAAAAAAA1" not in text
    assert m.render("application/openmetrics-text")[1].startswith("application/openmetrics")


async def test_metrics_on_the_admin_port_and_admin_alerts_fail_closed(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with running_gateway(tmp_path, emulator) as gw:
        _, key = await new_key(gw, "metered")
        async with azure_client(gw, key) as client:
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
        assert gw.monitoring is not None
        await gw.monitoring.recorder.drain()
        async with aiohttp.ClientSession() as http:
            async with http.get(gw.admin_url + "/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
            async with http.get(gw.admin_url + "/admin/alerts") as resp:
                assert resp.status == 401
    got = samples(text)
    metered = series(
        "keyguard_requests_total",
        app="metered",
        code="200",
        deployment="gpt-4o",
        gen_ai_operation_name="chat",
    )
    assert got[metered] == 1
    assert got[series("keyguard_audit_written")] >= 0 and series("keyguard_blocks_active") in got
    for secret in [key, *emulator.keys()]:
        assert str(secret) not in text
