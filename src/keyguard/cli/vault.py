"""``keyguard vault ...``: the local encrypted vault.

Secret values are read from standard input (a hidden prompt on a terminal, or a pipe), never from
the command line, where they would land in shell history and ``ps`` output.
"""

from __future__ import annotations

import json
import sys

import click

from ..errors import VaultError
from ..vault.master import MASTER_KEY_ENV, create_master_key_file
from ..vault.vault import validate_name
from .support import (
    CommandFailed,
    config_option,
    echo_table,
    format_time,
    run_sync,
    run_with_runtime,
)

__all__ = ["vault_group"]


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
