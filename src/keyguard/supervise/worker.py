"""One worker process of ``keyguard serve``: a whole gateway on the inherited sockets.

Each worker is a replica of the gateway in every respect (its own store connections, key
cache, upstream sessions, audit writer segment, detectors, policy reloader, rotation reports
and scheduler): everything that several replicas already share correctly through the store and
the limits backend is shared the same way by the workers of one machine. See
docs/operations.md, "Workers", for what runs where.

Signals: SIGTERM and SIGINT drain (readiness false, ``listen.drain_grace_s`` more of
accepting, then in-flight requests finish up to ``listen.drain_timeout_s``); SIGUSR2 retires
the worker at a reload (the same without the grace: the next generation accepts already).
SIGHUP is the supervisor's; a worker ignores it. A worker whose supervisor died drains too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..config import Settings, load_settings
from ..errors import ConfigurationError, GatewayError
from ..events import SecurityEvent
from ..server import Gateway, settle_memory
from .reload import plan_reload

__all__ = ["run_worker"]

log = logging.getLogger("keyguard.worker")

_PARENT_CHECK_S = 1.0


def run_worker(
    settings: Settings,
    environ: Mapping[str, str],
    sockets: Mapping[str, socket.socket],
    generation: int,
    notify: int,
    *,
    config_path: str,
    supervisor: int,
    loop_runner: Callable[[Any], int],
) -> int:
    """Serve until told to stop; the exit status (1 with one ``error:`` line when the
    gateway cannot start)."""
    try:
        return loop_runner(
            _serve(settings, environ, sockets, generation, notify, config_path, supervisor)
        )
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1


async def _serve(
    settings: Settings,
    environ: Mapping[str, str],
    sockets: Mapping[str, socket.socket],
    generation: int,
    notify: int,
    config_path: str,
    supervisor: int,
) -> int:
    gateway = Gateway(settings, environ, sockets=sockets, generation=generation)
    gateway_reloader = _Reloader(gateway, config_path, supervisor)
    gateway.set_reloader(gateway_reloader.request)
    await gateway.start()
    settle_memory()
    os.write(notify, b"R")
    os.close(notify)
    loop = asyncio.get_running_loop()
    how: asyncio.Future[str] = loop.create_future()

    def stop(reason: str) -> None:
        if not how.done():
            how.set_result(reason)

    loop.add_signal_handler(signal.SIGTERM, stop, "drain")
    loop.add_signal_handler(signal.SIGINT, stop, "drain")
    loop.add_signal_handler(signal.SIGUSR2, stop, "retire")
    loop.add_signal_handler(signal.SIGHUP, lambda: log.info("SIGHUP: send it to the supervisor"))
    watch = asyncio.create_task(_watch_parent(supervisor, stop))
    try:
        reason = await how
    finally:
        watch.cancel()
    grace = settings.listen.drain_grace_s if reason == "drain" else 0.0
    log.info("worker %d: %s", os.getpid(), "draining" if reason == "drain" else "retiring")
    await gateway.drain(grace)
    return 0


async def _watch_parent(supervisor: int, stop: Callable[[str], None]) -> None:
    while os.getppid() == supervisor:
        await asyncio.sleep(_PARENT_CHECK_S)
    log.error("worker %d: the supervisor is gone; draining", os.getpid())
    stop("drain")


class _Reloader:
    """``POST /admin/reload`` in a worker: validate the file here (so the caller gets the
    refusal, and it is audited with the caller as actor), then ask the supervisor."""

    def __init__(self, gateway: Gateway, config_path: str, supervisor: int) -> None:
        self._gateway = gateway
        self._path = config_path
        self._supervisor = supervisor

    async def request(self) -> dict[str, Any]:
        try:
            new = await asyncio.to_thread(load_settings, self._path)
        except ConfigurationError as exc:
            log.error("reload refused, the running configuration stays: %s", exc)
            runtime = self._gateway.runtime
            if runtime is not None:
                runtime.events.emit(
                    SecurityEvent(
                        datetime.now(UTC),
                        "config_reload_rejected",
                        "medium",
                        f"configuration reload refused: {exc}"[:500],
                    )
                )
            raise
        plan = plan_reload(self._gateway.settings, new)
        os.kill(self._supervisor, signal.SIGUSR1)
        return plan.answer("reloading")
