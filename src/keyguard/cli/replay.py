"""``keyguard replay FILE``: run recorded traffic through the detectors, with its own clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from ..config import load_settings
from ..detect.settings import DetectSettings
from ..monitor.declarations import declarations_from
from ..monitor.replay import ReplayResult, format_report, read_observations, replay, score
from .support import echo_table, format_time, run_sync

__all__ = ["replay_command"]


@click.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "-c", "config_path", envvar="KEYGUARD_CONFIG",
              type=click.Path(dir_okay=False),
              help="Use monitor.detect, limits.teams and the key and app limit rules from "
                   "this config (default: built-in detection settings, no limits).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the incidents as JSON.")
def replay_command(file: str, config_path: str | None, as_json: bool) -> None:
    """Replay requests from FILE through the detectors and print the incidents they open.

    FILE is an audit export (keyguard audit export) or JSON lines of request observations.
    Time comes from the records, so weeks of traffic replay in seconds: try other detection
    settings on real traffic before deploying them. Records labelled "benign" or
    "attack:SCENARIO:RULE" (bench/detect writes such files) also get the per-rule evaluation.

    \b
    Examples:
      keyguard audit export --since 30d > month.jsonl
      keyguard replay month.jsonl -c candidate.yaml
      python bench/detect/evaluate.py --write traffic.jsonl && keyguard replay traffic.jsonl
    """
    config = (
        run_sync(lambda: load_settings(config_path))
        if config_path and Path(config_path).exists()
        else None
    )
    settings = config.monitor.detect if config is not None else DetectSettings()
    teams: dict[str, str] = {}
    if config is not None:
        for team, apps in config.limits.teams.items():
            for app in apps:
                teams.setdefault(app, team)
    declarations = declarations_from(config.limits) if config is not None else None

    def go() -> ReplayResult:
        with open(file, "rb") as fh:
            return replay(
                read_observations(fh),
                settings,
                keep_labels=True,
                teams=teams,
                declarations=declarations,
            )

    result = run_sync(go)
    alerts = result.alerts
    if as_json:
        click.echo(json.dumps([a.incident.to_json() for a in alerts], indent=2, default=str))
        return
    click.echo(f"replayed {result.requests} requests; {len(alerts)} incidents")
    if alerts:
        table = [("WHEN", "SEVERITY", "RULE", "SUBJECT", "SUMMARY")]
        table += [
            (
                format_time(datetime.fromtimestamp(a.incident.created_at, UTC)),
                a.incident.severity,
                a.incident.rule,
                a.incident.subject,
                a.incident.summary[:90],
            )
            for a in alerts
        ]
        echo_table(table)
    if any(label not in (None, "benign") for label in result.labels):
        click.echo("")
        click.echo(format_report(score(result)))
