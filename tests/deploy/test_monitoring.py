"""The Grafana dashboard and the Prometheus alert rules use only metrics Keyguard exports: a
gateway with every part that adds metrics (shared limits in Redis, the replica bus, the
monitor, the audit and its SIEM stream) is started and its ``/metrics`` read; every metric
name in every expression must be one of them."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from keyguard.emulator.server import RunningEmulator
from tests.support.gateway import running_gateway
from tests.support.settings import free_port

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
PROMETHEUS_OWN = {"up"}  # series Prometheus itself makes for every target
_LABELS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_STRINGS = re.compile(r'"[^"]*"')
_NAME = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b")
_FUNCTIONS = {
    "sum", "rate", "increase", "delta", "changes", "histogram_quantile", "topk", "max", "min",
    "avg", "count", "clamp_min", "or", "and", "unless", "le", "e", "__rate_interval",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (label matchers, groupings, strings, functions,
    durations and numbers left out)."""
    bare = _STRINGS.sub(" ", _GROUPING.sub(" ", _LABELS.sub(" ", expr)))
    bare = re.sub(r"\[[^\]]*\]", " ", bare)  # range selectors
    return {n for n in _NAME.findall(bare) if n not in _FUNCTIONS and not n[0].isdigit()}


def test_the_expression_reader_finds_metrics_and_nothing_else() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, gen_ai_request_model) "
        '(rate(gen_ai_client_operation_duration_seconds_bucket{code=~"5.."}[5m]))) > 1e-9 '
        "or delta(keyguard_bus_lost[$__rate_interval]) > 0"
    )
    assert metric_names(expr) == {
        "gen_ai_client_operation_duration_seconds_bucket",
        "keyguard_bus_lost",
    }


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((MONITORING / "keyguard-alerts.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "keyguard-dashboard.json").read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    return exprs


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads((MONITORING / "keyguard-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24


def test_every_alert_rule_is_complete() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert metric_names(rule["expr"]), rule["alert"]


def exported(exposition: str) -> set[str]:
    """Every series name the exposition can carry."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


@pytest.mark.redis
async def test_every_metric_the_dashboard_and_the_alerts_use_is_exported(
    tmp_path: Path, emulator: RunningEmulator, redis_url: str, redis_prefix: str
) -> None:
    limits = {
        "backend": redis_url,
        "redis_key_prefix": redis_prefix,
        "rules": [{"scope": "app", "rpm": 100}],
    }
    async with running_gateway(
        tmp_path,
        emulator,
        limits=limits,
        cluster={"channel": f"keyguard-test:{secrets.token_hex(6)}"},
        monitor={"audit": {"sink": "syslog", "syslog_address": f"127.0.0.1:{free_port()}"}},
    ) as gw:
        async with aiohttp.ClientSession() as http:
            async with http.get(gw.admin_url + "/metrics") as resp:
                assert resp.status == 200
                names = exported(await resp.text())
    used = {name for expr in dashboard_exprs() for name in metric_names(expr)}
    used |= {name for rule in rules() for name in metric_names(rule["expr"])}
    assert used - names - PROMETHEUS_OWN == set()
    assert "keyguard_bus_connected" in used and "keyguard_limits_backend_up" in used
