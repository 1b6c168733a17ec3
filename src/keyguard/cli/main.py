"""The ``keyguard`` command: thin commands over the same service functions the gateway uses.

Every command turns a :class:`GatewayError` into one ``error: ...`` line on stderr and exit
status 1 (usage errors exit 2); no traceback reaches the user.

Commands are imported when they are invoked (or listed by ``--help``), not when ``keyguard``
starts: the gateway's modules cost more than a second of start-up, which ``keyguard scan`` in
a pre-commit hook or on a small tree should not pay.
"""

from __future__ import annotations

import importlib

import click

__all__ = ["main", "cli"]

# name -> (module, attribute); the modules are imported on first use.
_COMMANDS = {
    "serve": ("keyguard.cli.serve", "serve"),
    "reload": ("keyguard.cli.serve", "reload_command"),
    "demo": ("keyguard.cli.demo", "demo"),
    "emulator": ("keyguard.cli.emulator", "emulator"),
    "keys": ("keyguard.cli.keys", "keys_group"),
    "policy": ("keyguard.cli.policy", "policy_group"),
    "admin": ("keyguard.cli.admin", "admin_group"),
    "vault": ("keyguard.cli.vault", "vault_group"),
    "rotate": ("keyguard.cli.rotate", "rotate_group"),
    "scan": ("keyguard.cli.scan", "scan_command"),
    "audit": ("keyguard.cli.audit", "audit_group"),
    "alerts": ("keyguard.cli.alerts", "alerts_group"),
    "replay": ("keyguard.cli.replay", "replay_command"),
}


def _load(name: str) -> click.Command:
    module, attr = _COMMANDS[name]
    command: click.Command = getattr(importlib.import_module(module), attr)
    if name == "vault" and isinstance(command, click.Group) and "rekey" not in command.commands:
        from .rotate import rekey_command

        command.add_command(rekey_command)
    return command


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        command = self.commands.get(cmd_name)
        if command is None:
            command = self.commands[cmd_name] = _load(cmd_name)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keyguard")
def cli() -> None:
    """Keyguard: a zero-trust security gateway for Azure OpenAI.

    \b
    Try it:        keyguard demo
    Production:    keyguard serve --config keyguard.yaml
    Keys:          keyguard keys create --app billing-bot --expires 90d
    Upstream keys: keyguard vault put upstream/prod-eastus
    """


def main() -> None:
    cli()
