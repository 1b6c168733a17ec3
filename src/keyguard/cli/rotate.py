"""``keyguard rotate ...``, ``keyguard keys rotate`` and ``keyguard vault rekey``: rotation of
every key Keyguard manages, as thin commands over the rotation services.

No command ever prints an upstream key; ``keys rotate`` prints the new Keyguard key once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ..rotation.machine import Rotation
from ..wiring.rotation import rotation_service
from ..wiring.runtime import Runtime
from .support import (
    CommandFailed,
    cli_actor,
    config_option,
    echo_table,
    format_time,
    run_with_runtime,
)

if TYPE_CHECKING:  # the services import SQLAlchemy: only when a command runs
    pass

__all__ = ["rotate_group", "rekey_command"]


def _rotation_json(r: Rotation) -> dict[str, Any]:
    return {
        "id": r.id,
        "upstream": r.upstream,
        "mode": r.mode,
        "state": r.state,
        "trigger": r.trigger,
        "from_slot": r.active_slot,
        "to_slot": r.standby_slot,
        "version": r.new_version,
        "created_at": format_time(r.created_at),
        "finished_at": format_time(r.finished_at, empty="") or None,
        "error": r.error,
    }


@click.group("rotate")
def rotate_group() -> None:
    """Rotate upstream Azure OpenAI keys without downtime (the key1/key2 flip).

    \b
    The key not in use is regenerated, verified with a cheap call, stored as a new vault
    version, served by every replica, then the old key is regenerated so a leaked copy dies.
    Needs 'management' (subscription_id, resource_group, account_name) on the upstream.

    \b
    Examples:
      keyguard rotate upstream azure-east
      keyguard rotate status
      keyguard rotate status azure-east --json
    """


@rotate_group.command("upstream")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the rotation as JSON.")
@config_option
def rotate_upstream_command(name: str, as_json: bool, config_path: str) -> None:
    """Rotate the keys of upstream NAME now (or resume its unfinished rotation).

    Running gateways switch to the new key within rotation.credential_refresh_s; the command
    waits for them (rotation.switch_timeout) before it regenerates the old key.

    \b
    Examples:
      keyguard rotate upstream azure-east
      keyguard rotate upstream azure-east --json | jq -r .state
    """

    async def action(rt: Runtime) -> Rotation:
        service = rotation_service(rt)
        try:
            return await service.rotate_upstream(name, trigger=f"manual:{cli_actor().id}")
        finally:
            await service.close()

    rotation = run_with_runtime(config_path, action)
    if as_json:
        click.echo(json.dumps(_rotation_json(rotation), indent=2))
    elif rotation.state == "done":
        click.echo(
            f"rotated upstream {name}: now serving {rotation.standby_slot} (vault version "
            f"{rotation.new_version or '-'}); {rotation.active_slot} was regenerated"
            if rotation.mode == "flip"
            else f"regenerated both keys of upstream {name} (it uses managed identity)"
        )
    if rotation.state == "aborted":
        raise CommandFailed(f"rotation of {name} aborted: {rotation.error}; the old key stays")


@rotate_group.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@config_option
def status_command(name: str | None, as_json: bool, config_path: str) -> None:
    """Show recent rotations (newest first), of all upstreams or of NAME.

    \b
    Examples:
      keyguard rotate status
      keyguard rotate status azure-east --json | jq '.[0].state'
    """

    async def action(rt: Runtime) -> list[Rotation]:
        service = rotation_service(rt)
        try:
            return await service.status(name)
        finally:
            await service.close()

    rotations = run_with_runtime(config_path, action)
    if as_json:
        click.echo(json.dumps([_rotation_json(r) for r in rotations], indent=2))
        return
    table = [("UPSTREAM", "STATE", "TRIGGER", "SLOT", "VERSION", "STARTED", "FINISHED")]
    table += [
        (
            r.upstream,
            r.state,
            r.trigger,
            f"{r.active_slot or '?'}->{r.standby_slot or '?'}",
            r.new_version or "-",
            format_time(r.created_at),
            format_time(r.finished_at, empty="-"),
        )
        for r in rotations
    ]
    echo_table(table)
    for r in rotations:
        if r.error:
            click.echo(f"{r.upstream} {r.id}: {r.error}", err=True)


@click.command("rekey")
@click.option(
    "--new-master-key-file",
    "new_file",
    type=click.Path(dir_okay=False),
    help="Use this new master key instead of generating one (with KEYGUARD_MASTER_KEY set, "
    "required; or KEYGUARD_NEW_MASTER_KEY).",
)
@click.option(
    "--finish",
    is_flag=True,
    help="Close the window: keep only the new key, once nothing is left under the old one.",
)
@config_option
def rekey_command(new_file: str | None, finish: bool, config_path: str) -> None:
    """Move the vault to a new master key, online, with no restart.

    With 'master_key_file' in the config: a new key is generated (or taken from
    --new-master-key-file) and written in front of the old one in that file, so running
    gateways read both (the window is open); every secret version's data key is re-wrapped
    under the new key (compare-and-set: safe while gateways run, and repeatable). Then
    '--finish' rewrites the file with the new key alone: the old key opens nothing anywhere.

    With KEYGUARD_MASTER_KEY: give the new key; afterwards set KEYGUARD_MASTER_KEY to it and
    restart the gateways one by one (an environment cannot change under a running process).

    \b
    Examples:
      keyguard vault rekey                # open the window, re-wrap (run again to resume)
      keyguard vault rekey --finish       # close it
    """
    from .rekey import rekey

    rekey(config_path, new_file, finish=finish)
