"""The ``keyguard`` command: thin commands over the same service functions the gateway uses.

Every command turns a :class:`GatewayError` into one ``error: ...`` line on stderr and exit
status 1 (usage errors exit 2); no traceback reaches the user.
"""

from __future__ import annotations

import os

import click

from ..scan.cli import scan_command
from .admin import admin_group
from .alerts import alerts_group
from .audit import audit_group
from .demo import demo
from .emulator import emulator
from .keys import keys_group
from .policy import policy_group
from .replay import replay_command
from .rotate import rekey_command, rotate_group
from .support import config_option, run, run_sync, setup_logging
from .vault import vault_group

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
    setup_logging(settings.log_level)
    run(lambda: serve_gateway(settings, dict(os.environ)))


cli.add_command(demo)
cli.add_command(emulator)
cli.add_command(keys_group)
cli.add_command(policy_group)
cli.add_command(admin_group)
cli.add_command(vault_group)
cli.add_command(rotate_group)
vault_group.add_command(rekey_command)
cli.add_command(scan_command)
cli.add_command(audit_group)
cli.add_command(alerts_group)
cli.add_command(replay_command)


def main() -> None:
    cli()
