"""``keyguard demo``: try the gateway on one machine, with no Azure account."""

from __future__ import annotations

import click

from .support import run, setup_logging

__all__ = ["demo"]


@click.command()
@click.option("--check", is_flag=True, help="Run the tour with the openai SDK and exit 0 or 1.")
@click.option("--port", default=None, type=int, help="Proxy port (default 8080; 0 with --check).")
@click.option("--admin-port", default=None, type=int, help="Admin port (default 8081).")
def demo(check: bool, port: int | None, admin_port: int | None) -> None:
    """Start the Azure OpenAI emulator and the gateway in front of it.

    \b
    Examples:
      keyguard demo            # serve on 127.0.0.1:8080 until Ctrl-C
      keyguard demo --check    # run the end-to-end tour and exit
    """
    from ..demo import run_demo

    setup_logging("warning")  # one record per line, as the gateway's (docs/logs.md)
    if port is None:
        port = 0 if check else 8080
    if admin_port is None:
        admin_port = 0 if check else 8081
    status = run(lambda: run_demo(check=check, port=port, admin_port=admin_port))
    raise SystemExit(status)
