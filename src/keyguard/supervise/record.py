"""The supervisor's audit records (a reload by signal, a refused reload), written by a
short-lived child process: the supervisor itself never opens the store, starts a thread or an
event loop, so forking workers from it stays safe. The store and audit modules are imported in
that child only (the supervisor stays small: see :mod:`keyguard.cli.serve`)."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from ..config import Settings
from ..events import Event

__all__ = ["audit_in_child"]

log = logging.getLogger("keyguard.supervisor")

_TIMEOUT_S = 30.0


def audit_in_child(
    environ: Mapping[str, str], loop_runner: Callable[[Coroutine[Any, Any, None]], None]
) -> Callable[[Settings, Sequence[Event]], None]:
    def record(settings: Settings, events: Sequence[Event]) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                loop_runner(_append(settings, environ, events))
                code = 0
            except BaseException:
                log.exception("could not write to the audit log")
            finally:
                logging.shutdown()
                os._exit(code)
        deadline = time.monotonic() + _TIMEOUT_S
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        log.error("writing to the audit log took longer than %g s; given up", _TIMEOUT_S)

    return record


async def _append(settings: Settings, environ: Mapping[str, str], events: Sequence[Event]) -> None:
    from ..audit.oneshot import append_events
    from ..wiring.runtime import runtime

    async with runtime(settings, environ) as rt:
        if rt.engine is not None:
            await append_events(rt.engine, events, rt.vault, settings.monitor.audit)
