"""The ``keyguard`` command: thin commands over the same service functions the gateway uses.

Every command turns a :class:`GatewayError` into one ``error: ...`` line on stderr and exit
status 1 (usage errors exit 2); no traceback reaches the user. Anything else that escapes a
command (a port in use, a file that cannot be written, a bug) is one line too
(:mod:`keyguard.cli.failures`); ``keyguard --debug ...`` shows the traceback instead.

Commands are imported when they are invoked (or listed by ``--help``), not when ``keyguard``
starts: the gateway's modules cost more than a second of start-up, which ``keyguard scan`` in
a pre-commit hook or on a small tree should not pay.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

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
    "guard": ("keyguard.cli.guard", "guard_group"),
    "usage": ("keyguard.cli.usage", "usage_command"),
}


def _load(name: str) -> click.Command:
    module, attr = _COMMANDS[name]
    command: click.Command = getattr(importlib.import_module(module), attr)
    if name == "vault" and isinstance(command, click.Group) and "rekey" not in command.commands:
        from .rotate import rekey_command

        command.add_command(rekey_command)
    return command


class _LazyGroup(click.Group):
    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's, with every error as one line: a usage error names the ``--help`` to read."""
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare ``keyguard``: the help
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except (click.Abort, EOFError, KeyboardInterrupt):
            click.echo("error: aborted", err=True)
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            from .failures import one_line

            raise one_line(exc, ctx.invoked_subcommand or "") from None

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
@click.option(
    "--debug", is_flag=True, envvar="KEYGUARD_DEBUG", help="Show tracebacks of failed commands."
)
def cli(debug: bool) -> None:
    """Keyguard: a zero-trust security gateway for Azure OpenAI.

    \b
    Try it:        keyguard demo
    Production:    keyguard serve --config keyguard.yaml
    Keys:          keyguard keys create --app billing-bot --expires 90d
    Upstream keys: keyguard vault put upstream/prod-eastus
    """


def main() -> None:
    cli()
