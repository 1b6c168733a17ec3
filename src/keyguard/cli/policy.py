"""``keyguard policy ...``: check a policy file, explain a decision, show and apply the policy.

``check`` and ``explain --file`` need nothing but the file; the others open the store (the
managed policy lives there) and call the same service functions as the admin API.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from ..admin.service import AdminService
from ..config import load_settings
from ..policy.compiled import compile_policy
from ..policy.document import PolicyInvalid, load_document
from ..policy.evaluate import explain
from ..policy.review import explanation_json, lint, parse_principal, parse_request
from ..wiring.access import open_admin_service
from ..wiring.runtime import Runtime
from .support import cli_actor, config_option, run_sync, run_with_runtime

__all__ = ["policy_group"]


@click.group("policy")
def policy_group() -> None:
    """Roles, bindings and decisions: check, explain, show, apply.

    \b
    Examples:
      keyguard policy check policy.yaml
      keyguard policy explain --file policy.yaml --principal app:billing \\
          --request "chat gpt-4o max_tokens=500"
      keyguard policy explain -c keyguard.yaml --principal key:4fT9qZ1mB7xK --request "chat gpt-4o"
      keyguard policy apply managed.yaml -c keyguard.yaml
    """


def _time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("use an ISO time such as 2026-06-01T12:00:00Z") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@policy_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    help="Also warn about deployments this gateway does not serve.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check_command(file: str, config_path: str | None, as_json: bool) -> None:
    """Validate a policy file: every problem, then warnings. Exit 1 when it is invalid.

    \b
    Examples:
      keyguard policy check policy.yaml
      keyguard policy check policy.yaml -c keyguard.yaml     # also checks deployment names
    """
    deployments = None
    if config_path is not None:
        settings = run_sync(lambda: load_settings(config_path))
        deployments = [d for up in settings.upstreams for d in up.deployments]
    try:
        doc = load_document(file)
    except PolicyInvalid as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "problems": exc.problems, "warnings": []}))
        else:
            for problem in exc.problems:
                click.echo(f"error: {exc.source}: {problem}", err=True)
        raise SystemExit(1) from None
    policy = compile_policy(doc)
    warnings = lint(policy, deployments=deployments, now=datetime.now(UTC))
    if as_json:
        click.echo(json.dumps({"valid": True, "problems": [], "warnings": warnings}, indent=2))
        return
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"{file}: valid ({len(policy.roles)} roles, {len(policy.bindings)} bindings, "
        f"{len(warnings)} warnings)"
    )


def _print_explanation(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if result["allowed"]:
        click.echo(
            f"ALLOWED for {result['principal']} by binding {result['binding']} "
            f"(role {result['role']})"
        )
    else:
        where = (
            f" (binding {result['binding']}, role {result['role']})" if result["binding"] else ""
        )
        click.echo(f"DENIED for {result['principal']}: {result['code']}{where}")
        click.echo(f"  the caller sees: {result['message']}")
    click.echo(f"  subjects: {', '.join(result['subjects'])}")
    for trace in result["bindings"]:
        verdict = "allows" if trace["allows"] else f"{trace['code']}: {trace['detail']}"
        click.echo(f"  - {trace['binding']} (role {trace['role']}, via {trace['via']}): {verdict}")


@policy_group.command("explain")
@click.option("--principal", "-p", required=True, help="key:ID, app:NAME, agent:NAME, user:OID.")
@click.option(
    "--request",
    "-r",
    "request",
    required=True,
    help='"OPERATION [DEPLOYMENT] [max_tokens=N stream=true source=IP prompt_chars=N]" '
    "or a JSON object.",
)
@click.option(
    "--file",
    "-f",
    "file",
    type=click.Path(dir_okay=False),
    help="Explain against this policy file alone (no store needed).",
)
@click.option("--group", "groups", multiple=True, help="An Entra group the principal is in.")
@click.option("--app-role", "app_roles", multiple=True, help="An Entra app role it holds.")
@click.option("--at", "at", callback=_time, help="Decide at this time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
def explain_command(
    principal: str,
    request: str,
    file: str | None,
    groups: tuple[str, ...],
    app_roles: tuple[str, ...],
    at: datetime | None,
    as_json: bool,
    config_path: str,
) -> None:
    """Say which binding allows a request, or why it is denied (and what the caller sees).

    \b
    Examples:
      keyguard policy explain -f policy.yaml -p app:billing -r "chat gpt-4o max_tokens=500"
      keyguard policy explain -p agent:triage -r "chat gpt-4o stream=true source=10.1.2.3"
      keyguard policy explain -p user:6f1c... --group 0b9e... -r '{"operation": "embeddings",
          "deployment": "text-embedding-3-small"}'
    """
    if file is not None:

        def from_file() -> dict[str, Any]:
            policy = compile_policy(load_document(file))
            who = parse_principal(principal, policy, groups=groups, app_roles=app_roles)
            return explanation_json(
                explain(policy, who, parse_request(request), at or datetime.now(UTC))
            )

        _print_explanation(run_sync(from_file), as_json)
        return

    async def action(rt: Runtime) -> dict[str, Any]:
        service = await open_admin_service(rt)
        return await service.explain(
            cli_actor(), principal, request, groups=groups, app_roles=app_roles, at=at
        )

    _print_explanation(run_with_runtime(config_path, action), as_json)


@policy_group.command("show")
@config_option
def show_command(config_path: str) -> None:
    """Print the policy in force (file and managed document merged) as JSON.

    \b
    Example:
      keyguard policy show -c keyguard.yaml | jq '.effective.bindings'
    """

    async def action(rt: Runtime) -> dict[str, Any]:
        return await (await open_admin_service(rt)).get_policy(cli_actor())

    click.echo(json.dumps(run_with_runtime(config_path, action), indent=2))


@policy_group.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--expected-version",
    type=int,
    default=None,
    help="Refuse if the managed policy is not at this version (default: the latest).",
)
@config_option
def apply_command(file: str, expected_version: int | None, config_path: str) -> None:
    """Replace the managed policy (access.policy.managed) with FILE; gateways reload it.

    Names the policy file (access.policy.file) defines cannot be used.

    \b
    Example:
      keyguard policy apply temporary-access.yaml -c keyguard.yaml
    """
    doc = run_sync(lambda: load_document(file))

    async def action(rt: Runtime) -> int:
        service: AdminService = await open_admin_service(rt)
        version = expected_version
        if version is None:
            version = (await service.get_policy(cli_actor()))["managed_version"]
        revision = await service.replace_managed_policy(
            cli_actor(), doc.to_json(), expected_version=version
        )
        return revision.version

    version = run_with_runtime(config_path, action)
    click.echo(f"managed policy is now version {version}")
