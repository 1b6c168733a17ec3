"""Monitoring: the recorder that feeds audit, metrics and detection off the hot path, the
responses, and the admin routes (``/metrics``, ``/admin/alerts``)."""
