"""``keyguard audit ...``: verify the tamper-evident audit log, export it, show its public key."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncEngine

from ..audit.anchor import read_anchor
from ..audit.archive import archive_chains
from ..audit.archive_settings import MIN_AGE
from ..audit.archive_verify import restore_file, verify_archive
from ..audit.destination import is_url
from ..audit.export import Anchored, export_lines, verify_lines, verify_store
from ..audit.signing import load_public_keys, load_signer, signature_checker
from ..audit.store import AuditStore
from ..audit.verify import VerifyReport
from ..config import Settings, load_settings
from ..durations import parse_duration
from ..errors import ConfigurationError
from ..store import open_store
from ..wiring.archive import open_archive
from ..wiring.runtime import open_runtime
from .support import CommandFailed, config_option, run

__all__ = ["audit_group", "parse_since"]


def parse_since(value: str) -> datetime:
    """``24h``/``7d`` (that long ago) or an ISO 8601 time (UTC when no offset is given)."""
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value[:40]!r}: use a duration (24h, 7d) or a time (2026-01-31T00:00:00Z)"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _audit_store(store: object) -> AuditStore:
    engine = getattr(store, "engine", None)
    if not isinstance(engine, AsyncEngine):
        raise ConfigurationError("this store has no audit log")
    return AuditStore(engine)


async def _public_keys(
    settings: Settings, files: tuple[str, ...]
) -> tuple[dict[str, Ed25519PublicKey], str]:
    if files:
        pems = [Path(f).read_bytes() for f in files]
        return load_public_keys(pems), "the given public key(s)"
    rt = await open_runtime(settings, os.environ)
    try:
        signer = await load_signer(rt.vault)
    finally:
        await rt.close()
    return load_public_keys([signer.public_pem().encode()]), "the vault's signing key"


def _anchors(files: tuple[str, ...]) -> list[Anchored]:
    found: list[Anchored] = []
    for name in files:
        try:
            with open(name, encoding="utf-8", errors="replace") as fh:
                found += [(name, line, cp) for line, cp in read_anchor(fh)]
        except OSError as exc:
            raise ConfigurationError(f"cannot read the anchor {name!r}: {exc.strerror}") from None
    return found


def _report(
    report: VerifyReport,
    where: str,
    keys_from: str,
    anchors: tuple[str, ...],
    *,
    quiet: bool = False,
) -> None:
    click.echo(
        f"{where}: {report.records} records in {report.chains} writers' chains, "
        f"{report.checkpoints} checkpoints and {report.head_sets} head sets checked against "
        f"{keys_from}"
    )
    if anchors:
        click.echo(f"anchors: {report.anchors} anchored lines in {', '.join(anchors)}")
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.ok:
        click.echo("ok: every chain is intact and sealed to its end")
        if not anchors and not quiet:
            click.echo(
                "note: no anchor checked (--anchors): the newest records deleted together with "
                "their checkpoints would not show"
            )
        return
    for problem in report.problems:
        click.echo(f"  {problem}", err=True)
    if report.more_problems:
        click.echo(f"  ... and {report.more_problems} more", err=True)
    count = len(report.problems) + report.more_problems
    first_bad = ""
    if report.first_bad:
        of = f" of writer {report.first_bad_chain}" if report.first_bad_chain else ""
        first_bad = f"; first bad record: seq {report.first_bad}{of}"
    raise CommandFailed(f"the audit log does NOT verify ({count} problem(s)){first_bad}")


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log: every request, admin action and security event.

    \b
    Examples:
      keyguard audit verify
      keyguard audit export --since 24h > audit.jsonl
      keyguard audit public-key > audit.pub
      keyguard audit verify --file audit.jsonl --public-key audit.pub
      keyguard audit verify --anchors audit-anchors.jsonl
      keyguard audit archive --to /srv/audit-archive --older-than 30d
      keyguard audit restore /srv/audit-archive/3f2a9c0d11e4b7a8.jsonl.gz
    """


@audit_group.command("verify")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False),
              help="Verify an export (JSON lines) instead of the store.")  # fmt: skip
@click.option("--public-key", "public_keys", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="PEM public key(s) for the checkpoints (default: the vault's).")  # fmt: skip
@click.option("--anchors", "anchors", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Anchored checkpoints kept outside the store (default: the configured "
              "monitor.audit.anchor_file); any file of checkpoint lines will do.")  # fmt: skip
@click.option("--archive", "archive", metavar="FOLDER|URL",
              help="Verify an archive (keyguard audit archive): a folder or a Blob Storage "
              "container URL, not the store.")  # fmt: skip
@click.option("--with-store", "with_store", is_flag=True,
              help="With --archive: also check that every manifest the store keeps is in the "
              "archive (when the store archives only there).")  # fmt: skip
@config_option
def verify_command(
    file: str | None,
    public_keys: tuple[str, ...],
    anchors: tuple[str, ...],
    archive: str | None,
    with_store: bool,
    config_path: str,
) -> None:
    """Check the hash chain, every signed checkpoint and the anchors; name what is wrong.

    Exit status 0 when intact, 1 when a record was edited, deleted, inserted, reordered or
    appended by someone without the signing key, a checkpoint does not hold, or an anchored
    checkpoint is past the end of the log (its newest records were deleted).

    \b
    Examples:
      keyguard audit verify
      keyguard audit verify --public-key audit.pub          # no master key needed
      keyguard audit verify --anchors /var/log/keyguard/audit-anchors.jsonl
      keyguard audit verify --file siem-copy.jsonl --public-key audit.pub
      keyguard audit verify --archive /srv/audit-archive --public-key audit.pub
      keyguard audit verify --archive https://acct.blob.core.windows.net/audit --with-store
    """

    async def main() -> None:
        alone = file is not None or archive is not None
        blob = archive is not None and is_url(archive)
        needs = not alone or not public_keys or blob or with_store
        settings = load_settings(config_path) if needs else None
        keys, keys_from = await _public_keys(settings or Settings(), public_keys)
        check = signature_checker(keys)
        if archive is not None:
            kept = await _kept_manifests(settings) if with_store else None
            dest = await open_archive(settings or Settings(), archive)
            try:
                report = await verify_archive(dest, check, kept)
            finally:
                await dest.close()
            _report(report, archive, keys_from, (), quiet=True)
            return
        files = anchors or _configured_anchor(settings)
        anchored = _anchors(files)
        if file is not None:
            with open(file, encoding="utf-8") as fh:
                report = verify_lines(fh, check, anchored)
            _report(report, file, keys_from, files)
            return
        assert settings is not None
        store = await open_store(settings.store)
        try:
            report = await verify_store(_audit_store(store), check, anchored)
        finally:
            await store.close()
        _report(report, "audit log", keys_from, files)

    run(main)


async def _kept_manifests(settings: Settings | None) -> list[str]:
    assert settings is not None
    store = await open_store(settings.store)
    try:
        return await _audit_store(store).archives()
    finally:
        await store.close()


def _configured_anchor(settings: Settings | None) -> tuple[str, ...]:
    path = settings.monitor.audit.anchor_file if settings is not None else None
    return (path,) if path is not None and Path(path).exists() else ()


@audit_group.command("export")
@click.option("--since", "since", metavar="WHEN", help="A duration (24h, 7d) or an ISO time.")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="File (default: stdout).")
@config_option
def export_command(since: str | None, fmt: str, output: str | None, config_path: str) -> None:
    """Export records and checkpoints as JSON lines, for a SIEM or an auditor.

    \b
    Examples:
      keyguard audit export --since 24h --format jsonl > audit.jsonl
      keyguard audit export --since 2026-01-01T00:00:00Z -o january.jsonl
      keyguard audit export | jq 'select(.kind == "admin") | .data'
    """
    start = parse_since(since) if since else None

    async def main() -> int:
        settings = load_settings(config_path)
        store = await open_store(settings.store)
        out = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
        n = 0
        try:
            async for line in export_lines(_audit_store(store), start):
                out.write(line + "\n")
                n += 1
        finally:
            if output:
                out.close()
            await store.close()
        return n

    n = run(main)
    if output:
        click.echo(f"exported {n} lines to {output}", err=True)


@audit_group.command("archive")
@click.option("--to", "target", metavar="FOLDER|URL",
              help="The archive: a folder (it must exist; put it on other storage) or a Blob "
              "Storage container URL (default: monitor.audit.archive.to).")  # fmt: skip
@click.option("--older-than", "older_than", default="30d", show_default=True, metavar="AGE",
              help="Archive chains whose last record is older (at least 2d).")  # fmt: skip
@config_option
def archive_command(target: str | None, older_than: str, config_path: str) -> None:
    """Move old writers' chains out of the store into signed, compressed files.

    Each chain whose last record is older than AGE is written to <chain>.jsonl.gz in the
    archive, its signed manifest appended to manifests.jsonl there and kept in the store, and
    its rows deleted. A Blob Storage container is reached with monitor.audit.archive's
    credential (Keyguard's identity, or an account key or SAS in the vault). Run it daily, or
    let the gateway do it (monitor.audit.archive.to); verify with
    keyguard audit verify --archive FOLDER|URL.

    \b
    Examples:
      keyguard audit archive --to /srv/audit-archive --older-than 30d
      keyguard audit archive --to https://acct.blob.core.windows.net/audit
      keyguard audit verify --archive /srv/audit-archive --public-key audit.pub
    """
    try:
        age = parse_duration(older_than)
    except ValueError:
        raise click.BadParameter(f"{older_than[:40]!r}: use a duration such as 30d") from None
    if age < MIN_AGE:
        raise click.BadParameter(
            "at least 2d: a running writer closes its chain once a day (chain_max_age_s)"
        )

    async def main() -> tuple[int, str]:
        settings = load_settings(config_path)
        where = target or settings.monitor.audit.archive.to
        if where is None:
            raise ConfigurationError("--to FOLDER|URL, or set monitor.audit.archive.to")
        rt = await open_runtime(settings, os.environ)
        try:
            signer = await load_signer(rt.vault)
        finally:
            await rt.close()
        dest = await open_archive(settings, where)
        store = await open_store(settings.store)
        try:
            now = datetime.now(UTC)
            done = await archive_chains(_audit_store(store), signer, dest, now - age, now)
        finally:
            await store.close()
            await dest.close()
        return sum(m.records for m in done), dest.where

    n, where = run(main)
    click.echo(f"archived {n} records to {where}")


@audit_group.command("restore")
@click.argument("file", metavar="FOLDER/FILE|URL/FILE")
@click.option("--public-key", "public_keys", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="PEM public key(s) for the manifest (default: the vault's).")  # fmt: skip
@config_option
def restore_command(file: str, public_keys: tuple[str, ...], config_path: str) -> None:
    """Put an archived chain back into the store, once its manifest and content verify.

    \b
    Examples:
      keyguard audit restore /srv/audit-archive/3f2a9c0d11e4b7a8.jsonl.gz
      keyguard audit restore https://acct.blob.core.windows.net/audit/3f2a9c0d11e4b7a8.jsonl.gz
    """
    where, _, name = file.rstrip("/").rpartition("/")
    if not name or (not where and is_url(file)):
        raise click.BadParameter(f"{file[:80]!r}: name a file in an archive folder or container")

    async def main() -> int:
        settings = load_settings(config_path)
        keys, _ = await _public_keys(settings, public_keys)
        dest = await open_archive(settings, where or ".")
        store = await open_store(settings.store)
        try:
            return await restore_file(_audit_store(store), dest, name, signature_checker(keys))
        finally:
            await store.close()
            await dest.close()

    click.echo(f"restored {run(main)} records from {file}")


@audit_group.command("public-key")
@config_option
def public_key_command(config_path: str) -> None:
    """Print the audit signing key's public key (PEM), for verifying without the master key.

    \b
    Example:
      keyguard audit public-key > audit.pub
    """

    async def main() -> str:
        rt = await open_runtime(load_settings(config_path), os.environ)
        try:
            return (await load_signer(rt.vault)).public_pem()
        finally:
            await rt.close()

    click.echo(run(main), nl=False)
