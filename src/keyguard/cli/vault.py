"""``keyguard vault ...``: the local encrypted vault, and helpers shared by Keyguard's commands.

Secret values are read from standard input (a hidden prompt on a terminal, or a pipe), never from
the command line, where they would land in shell history and ``ps`` output.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import IO, Any, TypeVar

import click

from ..config import load_settings
from ..errors import GatewayError, VaultError
from ..runtime import Runtime, runtime
from ..vault.master import MASTER_KEY_ENV, create_master_key_file
from ..vault.vault import validate_name

__all__ = [
    "vault_group",
    "config_option",
    "CommandFailed",
    "run",
    "run_with_runtime",
    "format_time",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class CommandFailed(click.ClickException):
    """A :class:`GatewayError` at the CLI boundary: one ``error: ...`` line, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True, file=file)


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


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` in a fresh event loop; a ``GatewayError`` becomes :class:`CommandFailed`."""
    try:
        return asyncio.run(main())
    except GatewayError as exc:
        raise CommandFailed(str(exc)) from None


def run_with_runtime(config_path: str, action: Callable[[Runtime], Coroutine[Any, Any, T]]) -> T:
    """Load the config, open the runtime, run ``action(runtime)``, close the runtime."""

    async def main() -> T:
        settings = load_settings(config_path)
        async with runtime(settings, os.environ) as rt:
            return await action(rt)

    return run(main)


def format_time(value: datetime | None, *, empty: str = "never") -> str:
    """``2025-03-01T12:00:00Z``: UTC, whole seconds."""
    if value is None:
        return empty
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _valid_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return validate_name(value)
    except VaultError as exc:
        raise click.BadParameter(str(exc)) from None


def _strip_one_newline(value: str) -> str:
    for ending in ("\r\n", "\n"):
        if value.endswith(ending):
            return value[: -len(ending)]
    return value


def stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def read_secret_value(name: str) -> str:
    """The value for ``name`` from stdin: a hidden prompt on a terminal, else the whole pipe."""
    if stdin_is_tty():
        value: str = click.prompt(
            f"Value for {name}", hide_input=True, confirmation_prompt=True, err=True
        )
    else:
        value = _strip_one_newline(sys.stdin.read())
    if not value:
        raise CommandFailed(f"no value for {name} on standard input")
    return value


@click.group("vault")
def vault_group() -> None:
    """Store secrets (such as upstream Azure keys) in Keyguard's encrypted vault.

    Values are sealed with AES-256-GCM under a per-version data key, itself wrapped by the
    master key (KEYGUARD_MASTER_KEY or the config's master_key_file).

    \b
    Examples:
      keyguard vault init-master-key /etc/keyguard/master.key
      keyguard vault put upstream/azure-east          # prompts without echo
      az cognitiveservices account keys list ... --query key1 -o tsv \\
        | keyguard vault put upstream/azure-east
      keyguard vault list
    """


@vault_group.command("put")
@click.argument("name", callback=_valid_name)
@config_option
def put_command(name: str, config_path: str) -> None:
    """Store a new version of secret NAME, reading the value from standard input.

    On a terminal the value is prompted for twice without echo; otherwise the whole of standard
    input is the value (one trailing newline is removed). Values are never taken as arguments.
    Refer to the secret from the config as 'vault: NAME'.

    \b
    Examples:
      keyguard vault put upstream/azure-east
      printf %s "$AZURE_KEY" | keyguard vault put upstream/azure-east -c /etc/keyguard.yaml
    """
    value = read_secret_value(name)
    info = run_with_runtime(config_path, lambda rt: rt.vault.put(name, value))
    click.echo(f"stored {info.name} version {info.version} (kek id {info.kek_id})")


@vault_group.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_command(config_path: str, as_json: bool) -> None:
    """List secrets: name, latest version, master key id and time. Never values.

    \b
    Examples:
      keyguard vault list
      keyguard vault list --json | jq -r '.[].name'
    """
    infos = run_with_runtime(config_path, lambda rt: rt.vault.list())
    if as_json:
        rows = [
            {
                "name": i.name,
                "version": i.version,
                "kek_id": i.kek_id,
                "created_at": format_time(i.created_at),
            }
            for i in infos
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("NAME", "VERSION", "KEK ID", "CREATED")]
    table += [(i.name, str(i.version), i.kek_id, format_time(i.created_at)) for i in infos]
    echo_table(table)


@vault_group.command("init-master-key")
@click.argument("path", type=click.Path(dir_okay=False))
def init_master_key_command(path: str) -> None:
    """Create a new random master key file at PATH (mode 0600; never overwrites).

    Keep a backup of it somewhere safe: without it, nothing in the vault can be decrypted.

    \b
    Examples:
      keyguard vault init-master-key /etc/keyguard/master.key
      # then, in keyguard.yaml:   master_key_file: /etc/keyguard/master.key
    """
    master = run_sync(lambda: create_master_key_file(path))
    click.echo(f"created master key file {path} (mode 0600, kek id {master.kek_id})")
    click.echo(
        "Back it up somewhere safe: without it the vault cannot be decrypted. Use it with "
        f"'master_key_file: {path}' in the config, or export {MASTER_KEY_ENV}=\"$(cat {path})\".",
        err=True,
    )


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
