"""Helpers shared by Keyguard's commands: options, running coroutines, errors, output.

A :class:`GatewayError` reaching a command becomes :class:`CommandFailed`: one
``error: ...`` line on stderr and exit status 1 (click's usage errors exit 2).
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from ..config import load_settings
from ..core.logs import LogFormat, formatter_for
from ..core.times import utc_seconds
from ..durations import parse_duration
from ..errors import GatewayError
from ..events import SecurityEvent

if TYPE_CHECKING:  # imported where used: `keyguard serve`'s supervisor never loads them
    from ..admin.recording import Actor
    from ..admin.service import AdminService
    from ..wiring.runtime import Runtime

__all__ = [
    "CommandFailed",
    "cli_actor",
    "config_option",
    "duration_option",
    "echo_table",
    "event_loop_runner",
    "format_time",
    "run",
    "run_sync",
    "run_with_runtime",
    "run_with_service",
    "setup_logging",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class _BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler over a block-buffered stream, flushed at most every ``interval`` seconds by
    the records themselves and every ``interval`` seconds by a daemon thread when idle."""

    def __init__(self, stream: IO[str], interval: float = 1.0) -> None:
        super().__init__(stream)
        self._interval = interval
        self._last = time.monotonic()
        self._retired = False
        threading.Thread(target=self._flusher, name="log-flush", daemon=True).start()

    def flush(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            super().flush()

    def _flusher(self) -> None:
        while not self._retired:
            time.sleep(self._interval)
            self._last = time.monotonic()
            super().flush()

    def close(self) -> None:
        self._retired = True
        super().flush()
        super().close()


def setup_logging(level: str = "info", fmt: LogFormat = "auto") -> None:
    """Every log on stderr, one record per line (docs/logs.md): JSON, or text (``fmt``; auto:
    text on a terminal); the access log batched."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # no formatter prints where a record was logged from: the stack walk that finds it is
    # skipped (the logging HOWTO's "Optimization"; a fifth of each access log record)
    logging._srcfile = None
    formatter = formatter_for(fmt, sys.stderr)
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for old in list(root.handlers):
        root.removeHandler(old)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    root.addHandler(console)
    access = logging.getLogger("keyguard.access")
    for old in list(access.handlers):  # set up again (the worker after the supervisor's fork):
        access.removeHandler(old)  # one handler, or every access line is written twice
        old.close()
    stream = open(sys.stderr.fileno(), "w", buffering=1 << 16, closefd=False)  # noqa: SIM115
    handler = _BatchedStreamHandler(stream)
    handler.setFormatter(formatter)
    access.addHandler(handler)
    access.propagate = False


def cli_actor() -> Actor:
    """Who runs a CLI command, as audited: ``cli:<OS user>``. Whoever can open the store and
    the vault (the master key) is trusted as an admin."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no user name in the environment
        user = "unknown"
    from ..admin.recording import Actor

    return Actor(f"cli:{user}", "admin")


class CommandFailed(click.ClickException):
    """A :class:`GatewayError` at the CLI boundary: one ``error: ...`` line, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        message = " ".join(self.message.split("\n"))
        click.echo(f"error: {message}", err=True, file=file)


def config_option(f: F) -> F:
    """``--config/-c PATH`` (env ``KEYGUARD_CONFIG``, default ``keyguard.yaml``)."""
    return click.option(
        "--config",
        "-c",
        "config_path",
        envvar="KEYGUARD_CONFIG",
        default="keyguard.yaml",
        show_default=True,
        type=click.Path(dir_okay=False),
        help="Keyguard config file (env KEYGUARD_CONFIG).",
    )(f)


def event_loop_runner() -> Callable[[Coroutine[Any, Any, T]], T]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run
    return uvloop.run


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` in a fresh event loop; a ``GatewayError`` becomes :class:`CommandFailed`."""
    try:
        return event_loop_runner()(main())
    except GatewayError as exc:
        raise CommandFailed(str(exc)) from None


def run_with_runtime(
    config_path: str,
    action: Callable[[Runtime], Coroutine[Any, Any, T]],
    *,
    environ: Mapping[str, str] | None = None,
) -> T:
    """Load the config, open the runtime (``environ``: default the process's), run
    ``action(runtime)``, close the runtime.

    Every event the action emits (admin actions, security events) is written to the audit
    log before the command returns.
    """
    from ..audit.oneshot import recording
    from ..wiring.runtime import runtime

    async def main() -> T:
        settings = load_settings(config_path)
        async with (
            runtime(settings, os.environ if environ is None else environ) as rt,
            _announcing(rt),
            recording(rt.events, rt.audit_engine, rt.vault, settings.monitor.audit),
            _incidents(rt),
        ):
            return await action(rt)

    return run(main)


@asynccontextmanager
async def _announcing(rt: Runtime) -> AsyncIterator[None]:
    """Key, policy and block changes the command makes reach the running replicas at once
    over the replica bus (when one is configured), not at their next reload."""
    from ..wiring.bus import cli_bus

    async with AsyncExitStack() as stack:
        rt.announce = await cli_bus(stack, rt)
        yield


@asynccontextmanager
async def _incidents(rt: Runtime) -> AsyncIterator[None]:
    """Security events a command raises (a leak the scanner found) become incidents, in the
    list every replica and ``keyguard alerts`` read."""
    from ..monitor.store import MonitorStore
    from ..respond.incidents import IncidentBook, detection_from_event

    raised: list[SecurityEvent] = []
    rt.events.subscribe(lambda e: raised.append(e) if isinstance(e, SecurityEvent) else None)
    try:
        yield
    finally:
        if raised and rt.engine is not None:
            detect = rt.settings.monitor.detect
            book, store = IncidentBook(detect.cooldown_s), MonitorStore(rt.engine)
            for event in raised:
                found = detection_from_event(event, v4=detect.ipv4_prefix, v6=detect.ipv6_prefix)
                if found is not None:
                    await store.save_incident(book.take(found, found.at)[0])


def run_with_service(
    config_path: str, action: Callable[[AdminService, Actor], Coroutine[Any, Any, T]]
) -> T:
    """:func:`run_with_runtime` for the admin service functions (the ones the admin API
    calls), with the command's :func:`cli_actor`."""
    from ..wiring.access import open_admin_service

    async def with_service(rt: Runtime) -> T:
        return await action(await open_admin_service(rt), cli_actor())

    return run_with_runtime(config_path, with_service)


def duration_option(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> timedelta | None:
    """Click callback: ``90d``, ``12h``, ``30m``, ``45s`` -> a timedelta (``None`` stays)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def format_time(value: datetime | None, *, empty: str = "never") -> str:
    """``2025-03-01T12:00:00Z``: UTC, whole seconds."""
    return utc_seconds(value) or empty


def run_sync(action: Callable[[], T]) -> T:
    """Call ``action()``; a ``GatewayError`` becomes :class:`CommandFailed`."""
    try:
        return action()
    except GatewayError as exc:
        raise CommandFailed(str(exc)) from None


def echo_table(rows: Sequence[Sequence[str]]) -> None:
    """Print rows as left-aligned columns separated by two spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
