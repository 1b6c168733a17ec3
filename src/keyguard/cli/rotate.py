"""``keyguard rotate ...``, ``keyguard keys rotate`` and ``keyguard vault rekey``: rotation of
every key Keyguard manages, as thin commands over the rotation services.

No command ever prints an upstream key; ``keys rotate`` prints the new Keyguard key once.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click

from ..errors import GatewayError
from ..rotation.machine import Rotation
from ..vault.master import decode_master_key, load_master_key
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
    help="The new master key (create it with 'keyguard vault init-master-key PATH'). "
    "Default: the KEYGUARD_NEW_MASTER_KEY environment variable.",
)
@config_option
def rekey_command(new_file: str | None, config_path: str) -> None:
    """Re-wrap every vault secret version under a new master key, online.

    Values are not re-encrypted: each version's data key is re-wrapped (compare-and-set, so
    it is safe while gateways run and can be repeated after an interruption). Gateways keep
    serving what they loaded; afterwards point 'master_key_file' (or KEYGUARD_MASTER_KEY) at
    the new key and restart them one by one.

    \b
    Examples:
      keyguard vault init-master-key /etc/keyguard/master-2.key
      keyguard vault rekey --new-master-key-file /etc/keyguard/master-2.key
    """
    try:
        if new_file is not None:
            new = load_master_key({}, new_file)
        elif os.environ.get("KEYGUARD_NEW_MASTER_KEY"):
            new = decode_master_key(
                os.environ["KEYGUARD_NEW_MASTER_KEY"], source="KEYGUARD_NEW_MASTER_KEY"
            )
        else:
            raise click.UsageError("give --new-master-key-file or set KEYGUARD_NEW_MASTER_KEY")
    except GatewayError as exc:
        raise CommandFailed(str(exc)) from None
    report = run_with_runtime(config_path, lambda rt: rt.vault.rekey(new))
    click.echo(
        f"re-wrapped {report.rewrapped} secret versions under kek id {new.kek_id} "
        f"({report.under_new_key} in total, {report.remaining} left under the old key)"
    )
    if report.remaining:
        raise CommandFailed("some versions were written meanwhile: run the command again")
    click.echo(
        "Now point master_key_file (or KEYGUARD_MASTER_KEY) at the new key and restart the "
        "gateways one at a time; keep the old key until every one has restarted.",
        err=True,
    )
