"""``keyguard guard check FILE|-``: the local guardrails on a prompt, offline.

Exit status: 0 when nothing would be blocked, 1 when something would be (under the default
actions: secrets and custom rules block, personal data alerts), 2 on usage or configuration
errors.
"""

from __future__ import annotations

import json
import sys

import click

from keyguard.errors import GatewayError

__all__ = ["guard_group"]


class _UsageError(click.ClickException):
    exit_code = 2


@click.group("guard")
def guard_group() -> None:
    """The guardrails: check prompts offline."""


@guard_group.command("check")
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--config",
    "-c",
    "config_path",
    envvar="KEYGUARD_CONFIG",
    type=click.Path(exists=True, dir_okay=False),
    help="Read guardrails (blocklists, patterns, phone regions) from this config.",
)
@click.option("--json", "json_mode", flag_value="json", help="FILE is a JSON request body.")
@click.option("--text", "json_mode", flag_value="text", help="FILE is plain text.")
@click.option(
    "--operation",
    type=click.Choice(["chat", "completions", "responses", "embeddings", "images", "speech"]),
    help="The request body's operation (default: guessed from its keys).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)  # fmt: skip
def check_command(
    file: str, config_path: str | None, json_mode: str | None, operation: str | None, fmt: str
) -> None:
    """Run the local guardrails on FILE (or - for standard input) and print each finding.

    FILE is plain text, or a JSON request body (chat, completions, responses, embeddings):
    detected when it parses as a JSON object, or forced with --json / --text. Each finding
    shows where it is, its category and detector, the action the default guardrails take, and
    a preview that never shows the value. Exits 1 when something would be blocked.

    \b
    Examples:
      keyguard guard check prompts/support.txt
      keyguard guard check request.json --format json
      cat prompt.txt | keyguard guard check - -c keyguard.yaml
    """
    from keyguard.guard.actions import GuardActions
    from keyguard.guard.check import check_body, check_text, guess_operation, parse_body
    from keyguard.guard.engine import GuardEngine
    from keyguard.guard.settings import GuardSettings

    try:
        if file == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(file, "rb") as fh:
                raw = fh.read()
    except OSError as exc:
        raise _UsageError(f"cannot read {file}: {exc.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    settings = GuardSettings()
    if config_path is not None:
        from keyguard.config import load_settings

        try:
            settings = load_settings(config_path).guardrails
        except GatewayError as exc:
            raise _UsageError(str(exc)) from None
    engine = GuardEngine(settings)
    actions = GuardActions()
    body = None if json_mode == "text" else parse_body(text)
    if json_mode == "json" and body is None:
        raise _UsageError(f"{file} is not a JSON object: check it, or pass --text")
    if body is not None:
        findings = check_body(engine, actions, body, operation or guess_operation(body))
    else:
        findings = check_text(engine, actions, text)
    blocked = any(f.action == "block" for f in findings)
    if fmt == "json":
        out = {"blocked": blocked, "findings": [f.to_dict() for f in findings]}
        click.echo(json.dumps(out, indent=2))
    else:
        for f in findings:
            where = ".".join(str(p) for p in f.path) or "text"
            click.echo(
                f"{where}:{f.line}:{f.column}: {f.action} {f.family}/{f.category} "
                f"({f.detector}) {f.preview}"
            )
        summary = f"{len(findings)} finding(s); " + ("blocked" if blocked else "not blocked")
        click.echo(summary, err=True)
    if blocked:
        sys.exit(1)
