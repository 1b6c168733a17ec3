"""Typed keys for what the aiohttp application and requests carry."""

from __future__ import annotations

from aiohttp import web

from keyguard.emulator.state import EmulatorState

__all__ = ["STATE_KEY", "HEADERS_KEY", "DATA_PLANE_KEY"]

#: the running emulator's state
STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("emulator_state", EmulatorState)
#: extra response headers of one data-plane answer (rate-limit and model-session headers)
HEADERS_KEY: web.RequestKey[dict[str, str]] = web.RequestKey("emulator_headers", dict)
#: set on requests of the Azure OpenAI data plane (they get Azure's common headers)
DATA_PLANE_KEY: web.RequestKey[bool] = web.RequestKey("emulator_data_plane", bool)
