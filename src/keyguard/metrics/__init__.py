"""Prometheus metrics on the admin port (``GET /metrics``); see :mod:`.registry`."""

from .registry import BoundedLabel, GatewayMetrics

__all__ = ["GatewayMetrics", "BoundedLabel"]
