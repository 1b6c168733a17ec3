"""``keyguard keys ...``: create, list, rotate, suspend, resume and revoke the Keyguard keys
apps use to call the gateway.

Thin commands over :class:`keyguard.admin.service.AdminService`, the functions the admin API
calls, so both are audited alike. A key's secret is printed once, by ``create`` and
``rotate``, and is never stored or shown again.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import click

from ..admin.service import Actor, AdminService, key_json
from ..durations import parse_duration
from ..errors import BadRequest
from ..keys.service import key_state, validate_app
from ..store.base import KeyRecord
from .support import config_option, duration_option, echo_table, format_time, run_with_service

__all__ = ["keys_group"]


def _valid_app(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_app(value)
    except BadRequest as exc:
        raise click.BadParameter(exc.message) from None


@click.group("keys")
def keys_group() -> None:
    """Manage Keyguard keys: the credentials apps use instead of Azure keys.

    \b
    Examples:
      keyguard keys create --app billing-bot --expires 90d
      keyguard keys list --app billing-bot
      keyguard keys revoke 4fT9qZ1mB7xK
    """


@keys_group.command("create")
@click.option("--app", required=True, callback=_valid_app, help="The app the key belongs to.")
@click.option(
    "--expires",
    callback=duration_option,
    metavar="DURATION",
    help="Lifetime, e.g. 90d, 12h, 30m (default: never).",
)
@click.option("--description", default="", help="A note for operators (not secret).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@config_option
def create_command(
    app: str, expires: timedelta | None, description: str, as_json: bool, config_path: str
) -> None:
    """Create a key for an app and print it. It is shown only this once.

    \b
    Examples:
      keyguard keys create --app billing-bot
      keyguard keys create --app billing-bot --expires 90d --description "prod, team payments"
      keyguard keys create --app ci-smoke --expires 12h --json | jq -r .key
    """
    record, key = run_with_service(
        config_path,
        lambda service, actor: service.create_key(
            actor, app, expires_in=expires, description=description
        ),
    )
    if as_json:
        click.echo(json.dumps({**key_json(record, record.created_at), "key": key}, indent=2))
    else:
        click.echo(f"key id:   {record.key_id}")
        click.echo(f"app:      {record.app}")
        click.echo(f"expires:  {format_time(record.expires_at)}")
        click.echo(f"key:      {key}")
    click.echo(
        "warning: this key cannot be shown again. Store it now in the app's secret store; "
        "if it is lost, create a new key and revoke this one.",
        err=True,
    )


@keys_group.command("list")
@click.option("--app", callback=_valid_app, help="Only keys of this app.")
@click.option("--all", "show_all", is_flag=True, help="Include revoked and expired keys.")
@click.option(
    "--expiring",
    callback=duration_option,
    metavar="DURATION",
    help="Only active keys that stop working within DURATION (expiry or maximum age).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@config_option
def list_command(
    app: str | None, show_all: bool, expiring: timedelta | None, as_json: bool, config_path: str
) -> None:
    """List keys: id, app, state, created, expires. Never the key or its digest.

    Active keys only, unless --all is given.

    \b
    Examples:
      keyguard keys list
      keyguard keys list --app billing-bot --all
      keyguard keys list --expiring 7d
      keyguard keys list --json | jq -r '.[] | select(.state == "active") | .key_id'
    """
    now = datetime.now(UTC)
    if expiring is not None:
        within = expiring
        soon = run_with_service(
            config_path, lambda service, actor: service.expiring_keys(actor, within)
        )
        records = [replace(e.record, expires_at=e.expires_at) for e in soon]
        records = [r for r in records if app is None or r.app == app]
    else:
        records = run_with_service(
            config_path,
            lambda service, actor: service.list_keys(actor, app=app, include_revoked=show_all),
        )
    if as_json:
        click.echo(json.dumps([key_json(r, now) for r in records], indent=2))
        return
    table = [("KEY ID", "APP", "STATE", "CREATED", "EXPIRES")]
    table += [
        (
            r.key_id,
            r.app,
            key_state(r, now),
            format_time(r.created_at),
            format_time(r.expires_at),
        )
        for r in records
    ]
    echo_table(table)


@keys_group.command("revoke")
@click.argument("key_id")
@config_option
def revoke_command(key_id: str, config_path: str) -> None:
    """Revoke the key KEY_ID: the gateway refuses it from now on (idempotent).

    \b
    Examples:
      keyguard keys revoke 4fT9qZ1mB7xK
      keyguard keys list --app billing-bot --json | jq -r '.[].key_id' \\
        | xargs -n1 keyguard keys revoke
    """
    record = run_with_service(
        config_path, lambda service, actor: service.change_key(actor, key_id, "revoke")
    )
    click.echo(
        f"revoked key {record.key_id} (app {record.app}) at {format_time(record.revoked_at)}"
    )


async def _set_suspended(
    service: AdminService, actor: Actor, key_id: str | None, app: str | None, suspend: bool
) -> list[KeyRecord]:
    now = service.now()
    if key_id is not None:
        targets = [key_id]
    else:
        wanted = "active" if suspend else "suspended"
        records = await service.list_keys(actor, app=app, include_revoked=True)
        targets = [r.key_id for r in records if key_state(r, now) == wanted]
    change = "suspend" if suspend else "resume"
    return [await service.change_key(actor, target, change) for target in targets]


def _one_target(key_id: str | None, app: str | None) -> None:
    if (key_id is None) == (app is None):
        raise click.UsageError("give a KEY_ID or --app APP (not both)")


@keys_group.command("suspend")
@click.argument("key_id", required=False)
@click.option("--app", callback=_valid_app, help="Suspend every active key of this app.")
@config_option
def suspend_command(key_id: str | None, app: str | None, config_path: str) -> None:
    """Suspend a key (or all of an app's keys): refused until resumed. Reversible.

    \b
    Examples:
      keyguard keys suspend 4fT9qZ1mB7xK
      keyguard keys suspend --app billing-bot
    """
    _one_target(key_id, app)
    records = run_with_service(
        config_path, lambda service, actor: _set_suspended(service, actor, key_id, app, True)
    )
    for r in records:
        click.echo(f"suspended key {r.key_id} (app {r.app}); undo: keyguard keys resume {r.key_id}")
    if not records:
        click.echo("no active key to suspend")


@keys_group.command("resume")
@click.argument("key_id", required=False)
@click.option("--app", callback=_valid_app, help="Resume every suspended key of this app.")
@config_option
def resume_command(key_id: str | None, app: str | None, config_path: str) -> None:
    """Lift a suspension (by an operator, or an automatic response to an incident).

    \b
    Examples:
      keyguard keys resume 4fT9qZ1mB7xK
      keyguard keys resume --app billing-bot
      keyguard alerts list --json | jq -r '.[] | select(.actions | index("suspend_key")) | .key_id'
    """
    _one_target(key_id, app)
    records = run_with_service(
        config_path, lambda service, actor: _set_suspended(service, actor, key_id, app, False)
    )
    for r in records:
        click.echo(f"resumed key {r.key_id} (app {r.app})")
    if not records:
        click.echo("no suspended key to resume")


def _grace(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value, allow_zero=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@keys_group.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace",
    callback=_grace,
    metavar="DURATION",
    help="How long the old secret keeps working (default: rotation.key_grace, 24h).",
)
@click.option(
    "--idempotency-token",
    "token",
    metavar="TOKEN",
    help="Repeating the command with the same token returns the same new key.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@config_option
def keys_rotate_command(
    key_id: str, grace: timedelta | None, token: str | None, as_json: bool, config_path: str
) -> None:
    """Give key KEY_ID a new secret; the old one works until the grace period ends.

    The key id stays the same, so limits, quotas and budgets carry on. The new key is printed
    once, after every gateway replica accepts it.

    \b
    Examples:
      keyguard keys rotate 4fT9qZ1mB7xK
      keyguard keys rotate 4fT9qZ1mB7xK --grace 1h --idempotency-token deploy-2025-03-01
      keyguard keys rotate 4fT9qZ1mB7xK --grace 0s --json | jq -r .key     # leaked: no grace
    """
    result = run_with_service(
        config_path,
        lambda service, actor: service.rotate_key(actor, key_id, grace=grace, token=token),
    )
    record = result.record
    if as_json:
        payload = {
            **key_json(record, datetime.now(UTC)),
            "key": result.key,
            "previous_valid_until": format_time(record.previous_valid_until),
            "replayed": result.replayed,
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(f"key id:          {record.key_id}")
        click.echo(f"app:             {record.app}")
        click.echo(f"old key works until {format_time(record.previous_valid_until)}")
        click.echo(f"expires:         {format_time(record.expires_at)}")
        click.echo(f"key:             {result.key}")
    click.echo(
        "warning: store the new key in the app's secret store now; the old one stops working "
        f"at {format_time(record.previous_valid_until)}.",
        err=True,
    )
