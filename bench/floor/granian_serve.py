"""Shared by the Granian floors: the header sets, the command line and the Granian server.

Yardstick only. Granian (a Rust HTTP server) runs the app in one worker process with one
Rust runtime thread and one uvloop event loop (Granian's `--workers 1 --runtime-mode st
--runtime-threads 1 --loop uvloop`); like every floor it runs under `taskset` on the gateway
core, so its supervisor, worker and runtime threads all share that one core.
"""

import argparse
from collections.abc import Callable
from typing import Any

from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes
from granian.server import Server

# Request headers not forwarded (hop-by-hop, the caller's credential, compression): the same
# set as aiohttp_proxy.py.
HOP = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "trailer",
        "api-key",
        "authorization",
        "accept-encoding",
    }
)
# Response headers not relayed: the same set as aiohttp_proxy.py.
RESP_DROP = frozenset(
    {
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-encoding",
        "server",
        "date",
    }
)


def parse_args(default_port: int) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=default_port)
    ap.add_argument("--upstream", default="http://127.0.0.1:18080")
    ap.add_argument("--upstream-key", default="test")
    return ap.parse_args()


def serve(app: Any, args: argparse.Namespace, interface: Interfaces = Interfaces.RSGI) -> None:
    """Serve `app` until SIGTERM: an RSGI app (`__rsgi__`, `__rsgi_init__`, `__rsgi_del__`), or
    with `interface=Interfaces.ASGI` an ASGI app (lifespan included)."""

    def loader(*_args: Any, **_kwargs: Any) -> Callable[..., Any]:
        return app  # the worker is forked: it gets this very object

    Server(
        target="floor",  # only a label: `loader` hands over the app
        address=args.host,
        port=args.port,
        interface=interface,
        workers=1,
        runtime_threads=1,
        runtime_mode=RuntimeModes.st,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        log_access=False,
    ).serve(target_loader=loader, wrap_loader=False)
