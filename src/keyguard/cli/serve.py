"""``keyguard serve``: run the gateway."""

from __future__ import annotations

import os

import click

from .support import config_option, run, run_sync, setup_logging

__all__ = ["serve"]


@click.command()
@config_option
def serve(config_path: str) -> None:
    """Run the gateway (proxy port and admin port) until Ctrl-C or SIGTERM.

    \b
    Example:
      keyguard serve --config /etc/keyguard/keyguard.yaml
    """
    from ..config import load_settings
    from ..server import serve as serve_gateway

    settings = run_sync(lambda: load_settings(config_path))
    setup_logging(settings.log_level, settings.log_format)
    run(lambda: serve_gateway(settings, dict(os.environ)))
