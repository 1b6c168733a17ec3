"""Responses to detections: incidents, alerts (webhooks), throttling, suspension, rotation."""
