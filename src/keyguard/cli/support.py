"""Helpers shared by the CLI commands: logging set-up and running a coroutine."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import GatewayError

__all__ = ["run_async", "setup_logging"]


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def run_async(factory: Callable[[], Any]) -> Any:
    """Run a coroutine on uvloop; report a GatewayError as one line and exit 1."""
    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    try:
        return runner(factory())
    except GatewayError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
