"""The proxy port on Granian (a Rust HTTP server), embedded in the gateway's own event loop.

:class:`GranianSite` serves an ASGI application (:class:`~.asgi_server.AsgiProxy`) with
Granian's embedded server (``granian.server.embed``): one worker that is a task of the running
loop (uvloop under ``keyguard serve``), one Rust runtime thread, HTTP/1.1 only, no lifespan
(the gateway starts and stops everything itself, as on aiohttp), no Granian access log. The
process, its supervisor and ``--workers``, the admin port (aiohttp) and the background tasks
stay Keyguard's: Granian only accepts and parses connections and writes answers.

Stopping is graceful: Granian stops accepting at once (a new connection is refused), lets the
requests in flight finish (a stream to its end), closes kept-alive connections as their
current request ends, and only then returns (checked on 2.8.9).

The listening socket is Keyguard's (bound here, or handed over by the supervisor); Granian is
given a duplicate of its descriptor, which it closes when it stops; :meth:`GranianSite.stop`
closes the socket itself too (as aiohttp's site does), so that once the supervisor has closed
its copy as well, new connections are refused.

What Granian 2.8.9 enforces on its connections: the request line and headers within
``header_timeout_s`` (Granian's ``header_read_timeout``, capped here at 60 s, its maximum),
a per-worker cap of connections served at once (``backpressure``: further ones wait in the
kernel's backlog, they are not refused). What it does not: per-address connection caps, the
idle timeout of kept-alive connections, body timeouts (done by the adapter's reads).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Any

from granian._granian import SocketHolder
from granian.constants import HTTPModes, Interfaces, SSLProtocols
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.embed import Server

from .connections import ConnectionLimits

__all__ = ["GranianSite", "MAX_HEADER_TIMEOUT_S"]

log = logging.getLogger("keyguard")

#: Granian's longest header read timeout (``--http1-header-read-timeout``: at most 60 s)
MAX_HEADER_TIMEOUT_S = 60.0

#: the longest request line and headers Granian reads (beyond: 431, closed); aiohttp's limits
#: are 8 KiB a line and 128 headers
_MAX_HEAD = 65536

# Granian's own records go to Keyguard's handlers (the root logger), warnings and above.
# Incremental: Granian configures logging as it is built, and a full configuration would
# close every handler the process has (logging.config's way of starting afresh).
_LOGGING: dict[str, Any] = {"incremental": True, "handlers": {}, "loggers": {"_granian": {}}}


class _Embedded(Server):
    """Granian's embedded server on a listening socket it is given."""

    def __init__(self, app: Any, sock: socket.socket, **options: Any) -> None:
        super().__init__(app, **options)
        self._given = sock

    def _init_shared_socket(self) -> None:
        self._ssp = None
        # No Nagle on the connections (Linux: accepted sockets inherit it from the listener), as
        # aiohttp does: else each streamed event waits for the caller's delayed ACK (~40 ms)
        self._given.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # (fd, is a Unix socket, backlog): the stub shipped with 2.8.9 omits the constructor
        holder = SocketHolder(os.dup(self._given.fileno()), False, self.backlog)  # type: ignore[call-arg]
        self._shd = holder  # type: ignore[assignment]


class GranianSite:
    """Granian serving ``app`` on ``sock`` (listening) until :meth:`stop`."""

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        *,
        limits: ConnectionLimits,
        backlog: int,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        header_ms = int(min(limits.header_timeout_s, MAX_HEADER_TIMEOUT_S) * 1000)
        tls: dict[str, Any] = {}
        if cert_file is not None and key_file is not None:
            tls = {
                "ssl_cert": Path(cert_file),
                "ssl_key": Path(key_file),
                "ssl_protocol_min": SSLProtocols.tls12,
            }
        self._server = _Embedded(
            app,
            sock,
            interface=Interfaces.ASGINL,
            runtime_threads=1,
            http=HTTPModes.http1,
            websockets=False,
            backlog=backlog,
            backpressure=limits.max_connections,
            http1_settings=HTTP1Settings(
                header_read_timeout=header_ms, keep_alive=True, max_buffer_size=_MAX_HEAD
            ),
            log_level=LogLevels.warning,
            log_dictconfig=_LOGGING,
            **tls,
        )
        self._sock = sock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="granian")
        await asyncio.sleep(0)  # the worker is spawned: the socket is served from now on
        if self._task.done():
            self._task.result()  # its error, if it failed to start

    async def stop(self, timeout: float | None = None) -> None:
        """Stop accepting at once; return once the requests in flight (streams included) have
        finished and their connections are closed, or after ``timeout`` seconds (what is still
        in flight then ends with the process)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._server.stop()  # type: ignore[no-untyped-call]
        self._sock.close()  # this process's copy too: new connections are refused from now on
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            log.warning("the proxy port stopped with requests still in flight after %g s", timeout)
