"""Prometheus metrics of the gateway, updated off the hot path from finished requests.

Names follow the OpenTelemetry GenAI conventions where they fit (``gen_ai_client_token_usage``,
``gen_ai_client_operation_duration_seconds``, labels ``gen_ai_operation_name``,
``gen_ai_request_model``, ``gen_ai_token_type``) and ``keyguard_*`` elsewhere. Every label value
is bounded: deployments only when configured, apps only those of real keys (at most
``max_apps``, then ``other``), reasons and rules only from Keyguard's own code (at most 64
distinct). No key id, address or user agent is ever a label.

``observe`` costs a few microseconds: counter increments are summed per batch of requests
(:meth:`GatewayMetrics.commit`) and label children are cached, so prometheus_client's
lock-protected values are touched once per batch and series; histograms are plain bucket
counts on the event loop (:mod:`.histogram`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder

from ..core.observation import Observation
from .histogram import LoopHistogram, Series

__all__ = ["GatewayMetrics", "BoundedLabel"]

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
_SAFE = re.compile(r"[a-z][a-z0-9_]{0,47}")
_CATEGORY = re.compile(r"[a-z][a-z0-9_.-]{0,62}")  # built-in categories and custom rule names
_GUARD = {
    "family": frozenset({"secret", "personal", "custom", "attack", "harm"}),
    "action": frozenset({"block", "redact", "alert", "log"}),
    "where": frozenset({"request", "answer"}),
}


class BoundedLabel:
    """Admit at most ``cap`` distinct values (matching ``pattern``); the rest become ``other``."""

    def __init__(self, cap: int, pattern: re.Pattern[str] | None = _SAFE) -> None:
        self._seen: set[str] = set()
        self._cap = cap
        self._pattern = pattern

    def __call__(self, value: str | None) -> str:
        if value is None or value == "":
            return ""
        if value in self._seen:
            return value
        if len(self._seen) >= self._cap or (
            self._pattern is not None and not self._pattern.fullmatch(value)
        ):
            return "other"
        self._seen.add(value)
        return value


_MAX_SERIES_KEYS = 10_000  # (app, deployment, operation, status) combinations remembered


@dataclass(slots=True)
class _Series:
    """Everything one (app, deployment, operation, status) updates: counter keys and
    histogram series, so a request costs dictionary additions and bisections only."""

    app: str
    dep: str
    requests: tuple[Any, ...]
    input: tuple[Any, ...]
    output: tuple[Any, ...]
    upstream: Series
    overhead: Series
    usage_input: Series
    usage_output: Series


class GatewayMetrics:
    def __init__(self, deployments: Iterable[str], *, max_apps: int = 500) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self._deployments = frozenset(deployments)
        self._app = BoundedLabel(max_apps, pattern=None)  # apps come from the key store
        self._reason = BoundedLabel(64)
        self._op = BoundedLabel(32)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._pending: dict[tuple[Any, ...], float] = {}  # counter increments not yet applied
        self._series: dict[tuple[str | None, str | None, str | None, int], _Series] = {}
        ad = ["app", "deployment"]
        self.requests = Counter(
            "keyguard_requests", "Requests by app, deployment, operation and HTTP status.",
            [*ad, "gen_ai_operation_name", "code"], registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "keyguard_tokens", "Tokens by app and deployment (input, output, cached_input).",
            [*ad, "gen_ai_token_type"], registry=r,
        )  # fmt: skip
        self.cost = Counter(
            "keyguard_cost", "Cost by app and deployment, in the unit of the limits' prices.",
            ad, registry=r,
        )  # fmt: skip
        self.token_usage = LoopHistogram(
            "gen_ai_client_token_usage", "Input and output tokens per request (OTel GenAI).",
            ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_token_type"],
            buckets=TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream = LoopHistogram(
            "gen_ai_client_operation_duration", "Time spent upstream (Azure OpenAI), seconds.",
            ["gen_ai_operation_name", "gen_ai_request_model"], unit="seconds",
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.overhead = LoopHistogram(
            "keyguard_gateway_overhead", "Time Keyguard adds to a request (total - upstream).",
            ["gen_ai_operation_name"], unit="seconds", buckets=OVERHEAD_BUCKETS, registry=r,
        )  # fmt: skip
        self.refusals = Counter(
            "keyguard_limit_refusals", "Requests refused by Keyguard's limits (429).",
            [*ad, "reason"], registry=r,
        )  # fmt: skip
        self.auth_failures = Counter(
            "keyguard_auth_failures", "Failed authentications by reason.", ["reason"], registry=r
        )
        self.detections = Counter(
            "keyguard_detections", "Detector findings by rule and severity.",
            ["rule", "severity"], registry=r,
        )  # fmt: skip
        self.incidents = Counter(
            "keyguard_incidents", "Incidents opened by rule and severity.",
            ["rule", "severity"], registry=r,
        )  # fmt: skip
        self.responses = Counter(
            "keyguard_responses", "Automatic responses carried out, by action and outcome.",
            ["action", "outcome"], registry=r,
        )  # fmt: skip
        self.guardrails = Counter(
            "keyguard_guardrail_decisions",
            "Guardrail decisions by family, category, action and where (request or answer).",
            ["family", "category", "action", "where"], registry=r,
        )  # fmt: skip
        self._category = BoundedLabel(64, pattern=_CATEGORY)
        self.alerts = Counter(
            "keyguard_alerts", "Alert deliveries by webhook format and outcome.",
            ["format", "outcome"], registry=r,
        )  # fmt: skip

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        """A gauge read when scraped (queue depths, active blocks, ...)."""
        Gauge(name, doc, registry=self.registry).set_function(read)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, obs: Observation) -> None:
        key = (obs.app, obs.deployment, obs.operation, obs.status)
        series = self._series.get(key)
        if series is None:
            series = self._series_for(key)
        pending = self._pending
        pending[series.requests] = pending.get(series.requests, 0.0) + 1.0
        total_s = obs.latency_ms / 1000.0
        if obs.upstream_status:
            upstream_s = obs.upstream_ms / 1000.0
            series.upstream.observe(upstream_s)
            series.overhead.observe(max(0.0, total_s - upstream_s))
        else:
            series.overhead.observe(total_s)
        if obs.prompt_tokens or obs.completion_tokens:
            pending[series.input] = pending.get(series.input, 0.0) + obs.prompt_tokens
            pending[series.output] = pending.get(series.output, 0.0) + obs.completion_tokens
            series.usage_input.observe(obs.prompt_tokens)
            series.usage_output.observe(obs.completion_tokens)
            if obs.cached_tokens:
                self._add(self.tokens, obs.cached_tokens, series.app, series.dep, "cached_input")
        if obs.cost:
            self._add(self.cost, obs.cost, series.app, series.dep)
        if obs.guardrails:
            self._guardrails(obs.guardrails)
        if obs.status == 401:
            self._add(self.auth_failures, 1.0, self._reason(obs.reason))
        elif obs.status == 429 and not obs.upstream_status:
            self._add(self.refusals, 1.0, series.app, series.dep, self._reason(obs.reason))

    def _guardrails(self, hits: Iterable[dict[str, str]]) -> None:
        for hit in hits:
            labels = []
            for name in ("family", "action", "where"):
                value = hit.get(name, "")
                labels.append(value if value in _GUARD[name] else "other")
            category = self._category(hit.get("category"))
            if not category:
                continue  # a count of decisions beyond those kept, not a decision
            self._add(self.guardrails, 1.0, labels[0], category, labels[1], labels[2])

    def _series_for(self, key: tuple[str | None, str | None, str | None, int]) -> _Series:
        """The label values and series one kind of request updates, worked out once."""
        app = self._app(key[0])
        dep = key[1] if key[1] in self._deployments else ""
        op = self._op(key[2])
        code = str(key[3]) if 100 <= key[3] <= 599 else "other"
        series = _Series(
            app=app,
            dep=dep,
            requests=(self.requests, app, dep, op, code),
            input=(self.tokens, app, dep, "input"),
            output=(self.tokens, app, dep, "output"),
            upstream=self.upstream.labels(op, dep),
            overhead=self.overhead.labels(op),
            usage_input=self.token_usage.labels(op, dep, "input"),
            usage_output=self.token_usage.labels(op, dep, "output"),
        )
        if len(self._series) >= _MAX_SERIES_KEYS:
            self._series.clear()
        self._series[key] = series
        return series

    def _add(self, metric: Counter, amount: float, *labels: str) -> None:
        key = (metric, *labels)
        self._pending[key] = self._pending.get(key, 0.0) + amount

    def commit(self) -> None:
        """Apply the counter increments gathered since the last call (once per batch)."""
        pending, self._pending = self._pending, {}
        for (metric, *labels), amount in pending.items():
            self._child(metric, *labels).inc(amount)

    def count(self, metric: Counter, *labels: str, n: int = 1) -> None:
        """``n`` more events (detections, incidents, responses, alerts); applied at the next
        :meth:`commit` or scrape."""
        self._add(metric, float(n), *(self._reason(label) for label in labels))

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition (Prometheus text, or OpenMetrics when asked) and its content type."""
        self.commit()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
