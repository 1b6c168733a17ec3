"""``keyguard admin ...``: admin tokens (the admin API's credentials) and the API description.

Thin commands over the same service functions as the admin API; each leaves an
``AdminAction`` whose actor is ``cli:<your user name>``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click

from .. import __version__
from ..admin.api import AdminApi
from ..admin.openapi import openapi_document
from ..admin.service import token_json
from ..admin.settings import ADMIN_ROLES
from ..admin.tokens import AdminTokenRecord
from ..wiring.access import open_admin_service
from ..wiring.runtime import Runtime
from .support import (
    cli_actor,
    config_option,
    duration_option,
    echo_table,
    format_time,
    run_with_runtime,
)

__all__ = ["admin_group"]


@click.group("admin")
def admin_group() -> None:
    """The admin API: its tokens and its description.

    \b
    Bootstrap (on a host that can open the store and the vault):
      keyguard admin tokens create --role admin --name bootstrap
    Then call the admin port with 'Authorization: Bearer kga_...':
      curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8081/admin/whoami
    """


@admin_group.group("tokens")
def tokens_group() -> None:
    """Create, list and revoke admin tokens (roles: viewer < operator < admin).

    \b
    Examples:
      keyguard admin tokens create --role operator --name alice --expires 30d
      keyguard admin tokens list
      keyguard admin tokens revoke 8Hq2mZr1xPa0
    """


@tokens_group.command("create")
@click.option("--role", type=click.Choice(ADMIN_ROLES), required=True, help="The token's role.")
@click.option("--name", required=True, help="Who or what holds it (shown in lists and audit).")
@click.option(
    "--expires", callback=duration_option, metavar="DURATION", help="e.g. 30d (default: never)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@config_option
def create_command(
    role: str, name: str, expires: timedelta | None, as_json: bool, config_path: str
) -> None:
    """Create an admin token and print it. It is shown only this once.

    \b
    Examples:
      keyguard admin tokens create --role admin --name bootstrap
      keyguard admin tokens create --role viewer --name grafana --expires 90d --json | jq -r .token
    """

    async def action(rt: Runtime) -> tuple[AdminTokenRecord, str]:
        service = await open_admin_service(rt)
        return await service.create_admin_token(
            cli_actor(), name=name, role=role, expires_in=expires
        )

    record, token = run_with_runtime(config_path, action)
    if as_json:
        click.echo(json.dumps({**token_json(record, record.created_at), "token": token}, indent=2))
    else:
        click.echo(f"token id: {record.token_id}")
        click.echo(f"role:     {record.role}")
        click.echo(f"expires:  {format_time(record.expires_at)}")
        click.echo(f"token:    {token}")
    click.echo("warning: this token cannot be shown again; store it in a secret manager.", err=True)


@tokens_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@config_option
def list_command(as_json: bool, config_path: str) -> None:
    """List admin tokens (never the token or its digest)."""

    async def action(rt: Runtime) -> list[dict[str, Any]]:
        service = await open_admin_service(rt)
        now = service.now()
        return [token_json(t, now) for t in await service.list_admin_tokens(cli_actor())]

    rows = run_with_runtime(config_path, action)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("TOKEN ID", "NAME", "ROLE", "STATE", "CREATED", "EXPIRES")]
    table += [
        (
            r["token_id"],
            r["name"],
            r["role"],
            r["state"],
            r["created_at"],
            r["expires_at"] or "never",
        )
        for r in rows
    ]
    echo_table(table)


@tokens_group.command("revoke")
@click.argument("token_id")
@config_option
def revoke_command(token_id: str, config_path: str) -> None:
    """Revoke the admin token TOKEN_ID (idempotent).

    Running gateways refuse it at once when the replica bus is configured (cluster.bus), else
    within proxy.key_cache_ttl_s (they cache token records that long)."""

    async def action(rt: Runtime) -> AdminTokenRecord:
        service = await open_admin_service(rt)
        return await service.revoke_admin_token(cli_actor(), token_id)

    record = run_with_runtime(config_path, action)
    click.echo(f"revoked admin token {record.token_id} ({record.name}, {record.role})")


@admin_group.command("openapi")
@click.option("--config", "-c", "config_path", default=None, hidden=True)  # accepted, not needed
def openapi_command(config_path: str | None) -> None:
    """Print the admin API's OpenAPI description (also at GET /admin/openapi.json).

    It is fixed for a version of Keyguard: no config file is read.

    \b
    Example:
      keyguard admin openapi > keyguard-admin.openapi.json
    """
    click.echo(json.dumps(openapi_document(AdminApi.table_only(), version=__version__), indent=2))
