"""The ``keyguard`` command: thin commands over the same service functions the gateway uses.

Every command turns a :class:`GatewayError` into one ``error: ...`` line on stderr and exit
status 1 (usage errors exit 2); no traceback reaches the user.
"""

from __future__ import annotations

import os

import click

from ..errors import GatewayError
from .support import run_async, setup_logging

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keyguard")
def cli() -> None:
    """Keyguard: a zero-trust security gateway for Azure OpenAI.

    \b
    Try it:        keyguard demo
    Production:    keyguard serve --config keyguard.yaml
    Keys:          keyguard keys create --app billing-bot --expires 90d
    Upstream keys: keyguard vault put upstream/prod-eastus
    """


@cli.command()
@click.option(
    "--config",
    "-c",
    "config_path",
    envvar="KEYGUARD_CONFIG",
    default="keyguard.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The gateway's YAML config file.",
)
def serve(config_path: str) -> None:
    """Run the gateway (proxy port and admin port) until Ctrl-C or SIGTERM.

    \b
    Example:
      keyguard serve --config /etc/keyguard/keyguard.yaml
    """
    from ..config import load_settings
    from ..server import serve as serve_gateway

    try:
        settings = load_settings(config_path)
    except GatewayError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    setup_logging(settings.log_level)
    run_async(lambda: serve_gateway(settings, dict(os.environ)))


def _register() -> None:
    from .demo import demo
    from .emulator import emulator

    cli.add_command(demo)
    cli.add_command(emulator)
    for module, name in (
        ("keyguard.cli.keys", "keys_group"),
        ("keyguard.cli.vault", "vault_group"),
        ("keyguard.scan.cli", "scan_command"),
    ):
        try:
            mod = __import__(module, fromlist=[name])
        except ImportError:  # pragma: no cover - every module ships with the package
            continue
        cli.add_command(getattr(mod, name))


_register()


def main() -> None:
    cli()
