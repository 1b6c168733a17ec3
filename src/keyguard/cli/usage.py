"""``keyguard usage``: the usage read-out of a running gateway (``GET /admin/usage``).

The counters live in the gateway (in its memory, or in Redis shared by the replicas), so this
command asks the admin API rather than opening the store: it needs the admin port's URL (from
``listen.admin`` in the config file, or ``--url``) and an admin token of any role.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import click

from .support import CommandFailed, config_option, echo_table, run, run_sync

__all__ = ["usage_command"]


def _admin_url(config_path: str) -> str:
    from ..config import load_settings

    listen = run_sync(lambda: load_settings(config_path)).listen
    return f"{'https' if listen.tls is not None else 'http'}://{listen.admin}"


def get_admin(url: str, path: str, token: str) -> tuple[int, Any]:
    """``GET url + path`` with the admin token: the status and the JSON answer."""
    import aiohttp

    async def call() -> tuple[int, Any]:
        timeout = aiohttp.ClientTimeout(total=60)
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(url.rstrip("/") + path, headers=headers) as resp,
        ):
            return resp.status, await resp.json(content_type=None)

    try:
        return run(call)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CommandFailed(f"cannot reach the admin port at {url}: {exc or 'timed out'}") from None


def _until(when: str | None, now: datetime) -> str:
    """How long until ``when``: ``in 45s``, ``in 3h12m``, ``in 5d``; ``-`` for no window."""
    if when is None:
        return "-"
    seconds = max(0, int((datetime.fromisoformat(when) - now).total_seconds()))
    if seconds < 60:
        return f"in {seconds}s"
    if seconds < 3600:
        return f"in {seconds // 60}m{seconds % 60:02}s"
    if seconds < 86400:
        return f"in {seconds // 3600}h{seconds % 3600 // 60:02}m"
    return f"in {seconds // 86400}d{seconds % 86400 // 3600}h"


def _whose(scope: str, name: str | None) -> str:
    return "global" if name is None else f"{scope} {name}"


def _money(value: float, currency: str) -> str:
    return f"{value:.4f} {currency}"


def _show(answer: dict[str, Any]) -> None:
    now = datetime.fromisoformat(answer["now"])
    what = "everything" if answer["name"] is None else f"{answer['scope']} {answer['name']}"
    click.echo(f"usage of {what} at {answer['now']}")
    if answer["limits"]:
        table = [("LIMIT", "OF", "USED", "LIMIT", "REMAINING", "RESETS")]
        table += [
            (
                x["label"],
                _whose(x["scope"], x["name"]),
                str(x["used"]),
                str(x["limit"]),
                str(x["remaining"]),
                _until(x["resets_at"], now),
            )
            for x in answer["limits"]
        ]
        click.echo()
        echo_table(table)
    if answer["budgets"]:
        table = [("BUDGET", "OF", "USED", "LIMIT", "REMAINING", "RESETS")]
        table += [
            (
                f"per {b['period']}",
                _whose(b["scope"], b["name"]),
                _money(b["used"], b["currency"]),
                _money(b["limit"], b["currency"]),
                _money(b["remaining"], b["currency"]),
                _until(b["resets_at"], now),
            )
            for b in answer["budgets"]
        ]
        click.echo()
        echo_table(table)
    if not answer["limits"] and not answer["budgets"]:
        click.echo("no limit or budget applies")
    if answer.get("truncated"):
        click.echo("(more limits apply than are shown: ask for one app, key or team)")
    _show_spend(answer["spend"])


def _show_spend(spend: dict[str, Any]) -> None:
    click.echo()
    if not spend.get("audited", True):
        click.echo("spend: the audit log is off (monitor.audit.enabled), nothing to sum")
        return
    partial = " (partial: more records than were read)" if spend["truncated"] else ""
    click.echo(
        f"spend this {spend['period']} (since {spend['since']}): {spend['requests']} requests, "
        f"{spend['tokens']} tokens, cost {spend['cost']:.4f}{partial}"
    )
    for field, name, title in (
        ("by_app", "app", "APP"),
        ("by_key", "key_id", "KEY ID"),
        ("by_deployment", "deployment", "DEPLOYMENT"),
    ):
        rows = spend[field][:10]
        if len(rows) < 2 and field != "by_app":
            continue
        table = [(title, "REQUESTS", "TOKENS", "COST")]
        table += [(r[name], str(r["requests"]), str(r["tokens"]), f"{r['cost']:.4f}") for r in rows]
        click.echo()
        echo_table(table)
        if len(spend[field]) > len(rows) or spend.get(f"{field}_truncated"):
            click.echo("(top 10 shown; --json for more)")


@click.command("usage")
@click.option("--app", metavar="APP", help="One app (its limits, its teams', the global ones).")
@click.option("--key", "key_id", metavar="KEY_ID", help="One key id (never the key itself).")
@click.option("--team", metavar="TEAM", help="One team of limits.teams.")
@click.option("--deployment", metavar="NAME", help="One deployment.")
@click.option(
    "--period",
    type=click.Choice(["hour", "day", "week", "month"]),
    default="day",
    show_default=True,
    help="The spend's period, from its start (UTC; weeks start on Monday).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")
@click.option(
    "--token-env",
    default="KEYGUARD_ADMIN_TOKEN",
    show_default=True,
    help="The environment variable holding an admin token (any role).",
)
@click.option("--url", default=None, help="The admin port's URL (default: from listen.admin).")
@config_option
def usage_command(
    app: str | None,
    key_id: str | None,
    team: str | None,
    deployment: str | None,
    period: str,
    as_json: bool,
    token_env: str,
    url: str | None,
    config_path: str,
) -> None:
    """Show each limit and budget that applies, its current use across every replica, what
    remains and when it resets; and the spend over a period from the audit log. Reading
    charges nothing. Give at most one of --app, --key, --team, --deployment (none: every app
    with usage or limits, every team and deployment).

    \b
    Examples:
      export KEYGUARD_ADMIN_TOKEN=kga_...     # keyguard admin tokens create --role viewer ...
      keyguard usage --app billing-bot
      keyguard usage --key 4fT9qZ1mB7xK --period month
      keyguard usage --team payments --json | jq '.budgets[] | select(.remaining < 5)'
      keyguard usage --url https://keyguard-admin.internal:8081
    """
    given = {"app": app, "key": key_id, "team": team, "deployment": deployment}
    chosen = {name: value for name, value in given.items() if value is not None}
    if len(chosen) > 1:
        raise click.UsageError(
            "give at most one of --app, --key, --team, --deployment "
            f"(got --{' and --'.join(chosen)}); run once for each"
        )
    token = os.environ.get(token_env, "")
    if not token:
        raise CommandFailed(
            f"set {token_env} to an admin token (keyguard admin tokens create --role viewer "
            "--name usage)"
        )
    status, answer = get_admin(
        url or _admin_url(config_path),
        "/admin/usage?" + urlencode({**chosen, "period": period}),
        token,
    )
    if status != 200:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        message = error.get("message", answer) if isinstance(error, dict) else answer
        raise CommandFailed(f"usage refused ({status}): {message}")
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    _show(answer)
