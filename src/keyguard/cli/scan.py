"""``keyguard scan``: find Azure OpenAI / AI services keys and other credentials in files.

Exit status: 0 when nothing new is found, 1 when something is, 2 on usage or configuration
errors (so that 1 always means "a secret was found"); with ``--git-history``, 3 when nothing
was found but a shallow clone cut the history short, 4 when nothing was found but objects
missing from the clone were skipped (``keyguard.scan.gitclone``).

Start-up matters (a pre-commit hook runs this on every commit), so the scanner's modules are
imported when the command runs, not when the CLI is built.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from keyguard.errors import GatewayError

if TYPE_CHECKING:
    from keyguard.scan.findings import Finding
    from keyguard.scan.runner import ScanStats

__all__ = ["scan_command"]

_CONFIDENCE = {"low": 0, "medium": 1, "high": 2}
_FORMATS = ("text", "jsonl", "sarif")  # keyguard.scan.output.FORMATS (a test keeps them equal)
_DEFAULT_MAX_KIB = 5 * 1024  # keyguard.scan.walker.DEFAULT_MAX_SIZE in KiB (same test)


class _ScanError(click.ClickException):
    """A configuration problem: one ``error: ...`` line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {' '.join(self.message.splitlines())}", err=True, file=file)


def _gateway_key(config: Path | None) -> bytes | None:
    if config is None:
        return None
    import asyncio

    from keyguard.wiring.scan import gateway_fingerprint_key

    return asyncio.run(gateway_fingerprint_key(config))


def _respond(config: Path, findings: list[Finding]) -> int:
    import asyncio
    from datetime import UTC, datetime

    from keyguard.scan.respond import match_findings, plan_responses
    from keyguard.wiring.scan import apply_responses, managed_fingerprints

    managed = asyncio.run(managed_fingerprints(config))
    matches = match_findings(findings, managed)
    actions, events = plan_responses(matches, datetime.now(UTC))
    if actions:
        asyncio.run(apply_responses(config, actions, events))
    for a in actions:
        click.echo(f"respond: {a.action} {a.ref} (leaked at {a.location})", err=True)
    return len(actions)


def _find(
    roots: list[Path],
    staged: bool,
    git_history: bool,
    since: str | None,
    fetch_missing: bool,
    exclude: tuple[str, ...],
    max_size: int,
    jobs: int,
    key: bytes,
    stats: ScanStats,
) -> list[Finding]:
    from keyguard.scan.runner import scan_history, scan_staged, scan_tree

    if staged:
        return scan_staged(roots[0], key, exclude, max_size, stats)
    if git_history:
        findings: list[Finding] = []
        for root in roots:
            findings.extend(
                scan_history(root, key, since, exclude, max_size, jobs, stats, fetch_missing)
            )
        return findings
    return scan_tree(roots, key, exclude, max_size, jobs, stats)


@click.command("scan")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--git-history", is_flag=True, help="Scan every blob in the repository's history.")
@click.option("--since", metavar="REV", help="With --git-history: only commits not in REV.")
@click.option(
    "--fetch-missing",
    is_flag=True,
    help="With --git-history in a partial clone: fetch missing blobs (else they are skipped).",
)
@click.option("--staged", is_flag=True, help="Scan the staged changes (pre-commit hook).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report here instead of stdout.",
)
@click.option(
    "--baseline",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Accept the findings listed in this baseline file.",
)
@click.option(
    "--write-baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write all current findings to this baseline file and exit 0.",
)
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip matching paths (repeatable).")
@click.option(
    "--max-file-size",
    type=click.IntRange(min=1),
    default=_DEFAULT_MAX_KIB,
    show_default=True,
    help="Skip files larger than this many KiB.",
)
@click.option(
    "--min-confidence",
    type=click.Choice(list(_CONFIDENCE)),
    default="low",
    show_default=True,
    help="Report only findings at or above this confidence.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=0),
    default=0,
    help="Worker processes for large scans (0: one per CPU).",
)
@click.option(
    "--fingerprint-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Key for the fingerprints (else $KEYGUARD_FINGERPRINT_KEY, --config, default).",
)
@click.option(
    "--config",
    "config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Gateway config: use its fingerprint key and managed keys.",
)
@click.option(
    "--respond",
    is_flag=True,
    help="With --config: rotate/revoke managed keys whose fingerprint leaked.",
)
def scan_command(
    paths: tuple[Path, ...],
    git_history: bool,
    since: str | None,
    fetch_missing: bool,
    staged: bool,
    fmt: str,
    output: Path | None,
    baseline: Path | None,
    write_baseline: Path | None,
    exclude: tuple[str, ...],
    max_file_size: int,
    min_confidence: str,
    jobs: int,
    fingerprint_key_file: Path | None,
    config: Path | None,
    respond: bool,
) -> None:
    """Find leaked keys: Azure OpenAI / AI services (84-char, checksum verified, and 32-hex by
    context), Keyguard, OpenAI, Entra ID secrets, Storage, Cosmos DB, Service Bus / Event Hubs /
    Relay keys, SAS signatures, JWTs, bearer tokens, also base64-/URL-/JSON-encoded, in
    notebooks and split across string concatenation.

    \b
    Examples:
      keyguard scan .
      keyguard scan src config --exclude 'tests/fixtures/*' --format sarif -o scan.sarif
      keyguard scan . --git-history --since origin/main --format jsonl
      keyguard scan . --write-baseline .keyguard-scan-baseline.json
      keyguard scan . --baseline .keyguard-scan-baseline.json
      keyguard scan --staged            # what the pre-commit hook runs

    \b
    Exit status: 0 nothing new, 1 new findings, 2 usage or configuration error;
    with --git-history and nothing found: 3 the clone is shallow and older history
    was not scanned, 4 objects missing from the clone were skipped.
    """
    if (since or fetch_missing) and not git_history:
        raise click.UsageError("--since and --fetch-missing need --git-history")
    if staged and (git_history or paths and len(paths) > 1):
        raise click.UsageError("--staged scans one repository's index; give at most one PATH")
    if respond and config is None:
        raise click.UsageError("--respond needs --config (the gateway that manages the keys)")
    if baseline and write_baseline:
        raise click.UsageError("use either --baseline or --write-baseline")
    from keyguard.scan.baseline import load_baseline
    from keyguard.scan.baseline import write_baseline as save_baseline
    from keyguard.scan.fingerprint import resolve_fingerprint_key
    from keyguard.scan.gitclone import coverage_exit_status, coverage_notes
    from keyguard.scan.output import render
    from keyguard.scan.runner import ScanStats

    roots = list(paths) or [Path(".")]
    stats = ScanStats()
    try:
        fkey = resolve_fingerprint_key(fingerprint_key_file, os.environ, _gateway_key(config))
        findings = _find(
            roots,
            staged,
            git_history,
            since,
            fetch_missing,
            exclude,
            max_file_size * 1024,
            jobs,
            fkey.key,
            stats,
        )
        several = len(stats.coverage) > 1
        notes = [n for c in stats.coverage for n in coverage_notes(c, fetch_missing, several)]
        floor = _CONFIDENCE[min_confidence]
        findings = [f for f in findings if _CONFIDENCE[f.confidence] >= floor]
        if write_baseline is not None:
            save_baseline(write_baseline, findings, fkey.key_id)
            click.echo(
                f"baseline: {len(findings)} finding(s) written to {write_baseline}", err=True
            )
            for note in notes:
                click.echo(f"keyguard scan: {note}", err=True)
            return
        leaked = findings  # managed keys are rotated even when a baseline accepts the finding
        if baseline is not None:
            findings = load_baseline(baseline, fkey.key_id).new_findings(findings)
        report = render(findings, fmt, notes)
        if output is not None:
            output.write_text(report, encoding="utf-8")
        else:
            sys.stdout.write(report)
            sys.stdout.flush()
        if respond and config is not None:
            _respond(config, leaked)
    except GatewayError as exc:
        raise _ScanError(str(exc)) from None
    what = "blobs" if git_history else "files"
    click.echo(
        f"keyguard scan: {len(findings)} finding(s) in {stats.files} {what} "
        f"({stats.bytes / 1e6:.1f} MB scanned, {stats.skipped} skipped)",
        err=True,
    )
    for note in notes:
        click.echo(f"keyguard scan: {note}", err=True)
    if findings:
        sys.exit(1)
    status = coverage_exit_status(stats.coverage)
    if status:
        sys.exit(status)
