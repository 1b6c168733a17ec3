"""Monitoring settings: ``monitor:`` in the config file (audit, metrics, detect, respond).

::

    monitor:
      audit: {checkpoint_interval_s: 10, sink: syslog}
      detect:
        decoy_apps: [decoy-billing]
        velocity: {peak_multiplier: 5}
      respond:
        policy: {reseller: {high: [alert, suspend_key]}}
        webhooks:
          - {name: secops, format: slack, vault: alerts/slack-secops, min_severity: high}

Every part is on by default; see ``docs/monitoring.md``.
"""

from __future__ import annotations

from ..audit.settings import AuditSettings
from ..core.settings import Frozen
from ..detect.settings import DetectSettings
from ..respond.settings import RespondSettings

__all__ = ["MonitorSettings", "MetricsSettings"]


class MetricsSettings(Frozen):
    enabled: bool = True  # GET /metrics on the admin port
    max_apps: int = 500  # distinct app label values; more become "other"


class MonitorSettings(Frozen):
    audit: AuditSettings = AuditSettings()
    metrics: MetricsSettings = MetricsSettings()
    detect: DetectSettings = DetectSettings()
    respond: RespondSettings = RespondSettings()
