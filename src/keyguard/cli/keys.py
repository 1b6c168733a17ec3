"""``keyguard keys ...``: create, list and revoke the Keyguard keys apps use to call the gateway.

Thin commands over :class:`keyguard.keys.service.KeyService` (the admin API calls the same
methods). A key's secret is printed once, by ``create``, and is never stored or shown again.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from ..errors import BadRequest
from ..events import AdminAction
from ..keys.service import KeyState, key_state, validate_app
from ..runtime import Runtime
from ..store.base import KeyRecord
from .rotate import expiring_keys, keys_rotate_command
from .support import config_option, duration_option, echo_table, format_time, run_with_runtime

__all__ = ["keys_group"]


def _valid_app(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_app(value)
    except BadRequest as exc:
        raise click.BadParameter(exc.message) from None


def _as_json(record: KeyRecord, state: KeyState) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "app": record.app,
        "state": state,
        "created_at": format_time(record.created_at),
        "expires_at": format_time(record.expires_at, empty="") or None,
        "revoked_at": format_time(record.revoked_at, empty="") or None,
        "description": record.description,
    }


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
    now = datetime.now(UTC)

    async def create(rt: Runtime) -> tuple[KeyRecord, str]:
        record, key = await rt.keys.create(
            app, now=now, expires_in=expires, description=description
        )
        after = {"app": app, "expires_at": format_time(record.expires_at)}
        rt.events.emit(
            AdminAction(now, _actor(), "keys.create", f"key:{record.key_id}", None, after)
        )
        return record, key

    record, key = run_with_runtime(config_path, create)
    if as_json:
        payload = {
            "key_id": record.key_id,
            "app": record.app,
            "key": key,
            "created_at": format_time(record.created_at),
            "expires_at": format_time(record.expires_at, empty="") or None,
        }
        click.echo(json.dumps(payload, indent=2))
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
        soon = run_with_runtime(config_path, lambda rt: expiring_keys(rt, expiring, now))
        records = [replace(e.record, expires_at=e.expires_at) for e in soon]
        records = [r for r in records if app is None or r.app == app]
    else:
        records = run_with_runtime(
            config_path, lambda rt: rt.keys.list(app=app, include_revoked=show_all, now=now)
        )
    if as_json:
        click.echo(json.dumps([_as_json(r, key_state(r, now)) for r in records], indent=2))
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
    now = datetime.now(UTC)

    async def revoke(rt: Runtime) -> KeyRecord:
        before = await rt.keys.get(key_id)
        record = await rt.keys.revoke(key_id, now=now)
        rt.events.emit(
            AdminAction(now, _actor(), "keys.revoke", f"key:{key_id}",
                        {"state": key_state(before, now)}, {"state": "revoked"})
        )  # fmt: skip
        return record

    record = run_with_runtime(config_path, revoke)
    click.echo(
        f"revoked key {record.key_id} (app {record.app}) at {format_time(record.revoked_at)}"
    )


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


async def _set_suspended(
    rt: Runtime, key_id: str | None, app: str | None, suspend: bool
) -> list[KeyRecord]:
    now = datetime.now(UTC)
    if key_id is not None:
        targets = [await rt.keys.get(key_id)]
    else:
        targets = await rt.keys.list(app=app, include_revoked=False, now=now)
        if suspend is False:  # suspended keys are not "active": list them all
            targets = [
                r
                for r in await rt.keys.list(app=app, include_revoked=True, now=now)
                if key_state(r, now) == "suspended"
            ]
    done = []
    events = rt.events  # audited by run_with_runtime
    for record in targets:
        change = rt.keys.suspend if suspend else rt.keys.resume
        updated = await change(record.key_id, now=now)
        events.emit(
            AdminAction(
                created=now,
                actor=_actor(),
                action="keys.suspend" if suspend else "keys.resume",
                target=f"key:{record.key_id}",
                before={"state": key_state(record, now)},
                after={"state": key_state(updated, now)},
            )
        )
        done.append(updated)
    return done


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
    records = run_with_runtime(config_path, lambda rt: _set_suspended(rt, key_id, app, True))
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
    records = run_with_runtime(config_path, lambda rt: _set_suspended(rt, key_id, app, False))
    for r in records:
        click.echo(f"resumed key {r.key_id} (app {r.app})")
    if not records:
        click.echo("no suspended key to resume")


keys_group.add_command(keys_rotate_command)
