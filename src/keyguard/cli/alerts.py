"""``keyguard alerts ...``: every incident (the detectors' findings and the security events
raised elsewhere), with its evidence; over the admin service functions, like ``/admin/alerts``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from .audit import parse_since
from .support import config_option, echo_table, format_time, run_with_service

__all__ = ["alerts_group"]


def _when(ts: float) -> str:
    return format_time(datetime.fromtimestamp(ts, UTC))


@click.group("alerts")
def alerts_group() -> None:
    """Incidents opened by the abuse detectors (LLMjacking, stuffing, decoys, ...).

    \b
    Examples:
      keyguard alerts list
      keyguard alerts list --since 7d --all --json | jq '.[] | select(.rule == "velocity")'
      keyguard alerts acknowledge 3f9c2a1b7d4e5f60
      keyguard alerts resolve 3f9c2a1b7d4e5f60
    """


@alerts_group.command("list")
@click.option("--since", metavar="WHEN", help="Updated within a duration (24h) or since a time.")
@click.option("--all", "show_all", is_flag=True, help="Include resolved incidents.")
@click.option(
    "--status",
    type=click.Choice(["open", "acknowledged", "resolved"]),
    help="Only incidents with this status.",
)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, with evidence.")
@config_option
def list_command(
    since: str | None,
    show_all: bool,
    status: str | None,
    limit: int,
    as_json: bool,
    config_path: str,
) -> None:
    """List incidents, newest first (open and acknowledged ones, unless --all or --status).

    \b
    Examples:
      keyguard alerts list
      keyguard alerts list --status open
      keyguard alerts list --since 24h --json
    """
    start = parse_since(since) if since else None
    wanted = status or (None if show_all else "unresolved")
    incidents = run_with_service(
        config_path,
        lambda service, actor: service.list_incidents(
            actor, since=start, status=wanted, limit=limit
        ),
    )
    if as_json:
        click.echo(json.dumps([i.to_json() for i in incidents], indent=2, default=str))
        return
    if not incidents:
        click.echo("no incidents")
        return
    table = [("ID", "WHEN", "STATUS", "SEVERITY", "RULE", "SUBJECT", "COUNT", "ACTIONS", "SUMMARY")]
    table += [
        (
            i.id,
            _when(i.created_at),
            i.status,
            i.severity,
            i.rule,
            i.subject,
            str(i.count),
            ",".join(i.actions) or "-",
            i.summary[:80],
        )
        for i in incidents
    ]
    echo_table(table)


@alerts_group.command("acknowledge")
@click.argument("incident_id")
@config_option
def acknowledge_command(incident_id: str, config_path: str) -> None:
    """Acknowledge an open incident: someone is on it.

    It stays acknowledged while its finding repeats (the count grows), until it is resolved.
    Acknowledging it again changes nothing; a resolved incident cannot be acknowledged.

    \b
    Example:
      keyguard alerts acknowledge 3f9c2a1b7d4e5f60
    """
    incident = run_with_service(
        config_path, lambda service, actor: service.acknowledge_incident(actor, incident_id)
    )
    by = incident.acknowledged_by or "-"
    at = _when(incident.acknowledged_at) if incident.acknowledged_at is not None else "-"
    click.echo(
        f"incident {incident.id} ({incident.rule} on {incident.subject}) acknowledged "
        f"by {by} at {at}"
    )


@alerts_group.command("resolve")
@click.argument("incident_id")
@config_option
def resolve_command(incident_id: str, config_path: str) -> None:
    """Mark an incident resolved and lift the throttles it put in place.

    A suspended key stays suspended: lift that with 'keyguard keys resume KEY_ID'.

    \b
    Example:
      keyguard alerts resolve 3f9c2a1b7d4e5f60
    """

    incident, lifted = run_with_service(
        config_path, lambda service, actor: service.resolve_incident(actor, incident_id)
    )
    click.echo(f"resolved incident {incident.id} ({incident.rule} on {incident.subject})")
    if lifted:
        click.echo(f"lifted {lifted} throttle(s); replicas drop them within seconds")
