"""Verify an archive (:mod:`.archive`) and bring one of its chains back into the store.

:func:`verify_archive` checks every manifest (its signature, its link to the one before, so a
manifest removed, inserted or reordered shows), and every file a manifest names: its length and
SHA-256 (a replaced or truncated file shows before it is read), then its content as an export
(its chain and checkpoints) and that it ends where its manifest says. Files no manifest names
(a run cut short before its manifest, a stray upload) are noted and never counted: only a
signed manifest makes a file part of the archive. A removed *last* manifest does not show in
the archive alone; the store keeps every manifest too: given them (``kept``), any of them
missing from the archive is a problem.

:func:`restore_file` puts one file's chain back into the store once its manifest and content
verify.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import ConfigurationError, GatewayError
from .archive import GENESIS, file_digest, line_digest
from .chain import Checkpoint, Record
from .destination import MANIFESTS, Destination, check_name
from .export import verify_lines
from .manifest import Manifest
from .store import AuditStore
from .verify import VerifyReport

__all__ = ["verify_archive", "restore_file"]


def _read_gz(path: Any, name: str) -> list[str]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return fh.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{name}: not a readable archive ({exc})") from None


def _parse(line: str) -> Manifest | None:
    try:
        manifest = Manifest.from_line(line)
        check_name(manifest.file)
        return manifest
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ConfigurationError):
        return None


async def _content(dest: Destination, manifest: Manifest) -> tuple[list[str] | None, str]:
    """The file's lines if it is the one the manifest names, else why not."""
    size = await dest.size(manifest.file)
    if size is None:
        return None, f"its file {manifest.file} is missing"
    if manifest.size is not None and size != manifest.size:
        return None, f"{manifest.file}: its length is not the manifest's (replaced or truncated)"
    async with dest.local(manifest.file) as path:
        if await asyncio.to_thread(file_digest, path) != manifest.sha256:
            return None, f"{manifest.file}: its SHA-256 is not the manifest's (changed)"
        return await asyncio.to_thread(_read_gz, path, manifest.file), ""


async def verify_archive(
    dest: Destination, check: Callable[[Any], bool], kept: list[str] | None = None
) -> VerifyReport:
    """Every manifest in ``dest`` and every file it names; with ``kept`` (the manifests the
    store keeps, when it archives only to ``dest``), also that none of them left the archive
    (a removed last manifest shows)."""
    report = VerifyReport()
    prev = GENESIS
    named: set[str] = set()
    lines, _ = await dest.manifests()
    there = set(lines)
    for line in kept or ():
        if line not in there:
            manifest = _parse(line)
            what = f"{manifest.file} (writer {manifest.chain})" if manifest else "a damaged one"
            report.problems.append(
                f"the store's manifest of {what} is not in {MANIFESTS} (removed from the archive)"
            )
    for number, line in enumerate(lines, 1):
        where = f"{MANIFESTS}:{number}"
        manifest = _parse(line)
        follows = prev
        prev = line_digest(line)
        if manifest is None:
            report.problems.append(f"{where}: not an archive manifest")
            continue
        if not check(manifest):
            report.problems.append(f"{where}: its signature is not valid (forged or edited)")
        if manifest.prev != follows:
            report.problems.append(
                f"{where}: does not follow the manifest before it (one was removed, inserted "
                "or reordered)"
            )
        report.chains += 1
        named.add(manifest.file)
        try:
            content, problem = await _content(dest, manifest)
        except GatewayError as exc:
            content, problem = None, f"{manifest.file}: {exc}"
        if content is None:
            report.problems.append(problem if "missing" not in problem else f"{where}: {problem}")
            continue
        part = verify_lines(content, check)
        report.records += part.records
        report.checkpoints += part.checkpoints
        report.problems += [f"{manifest.file}: {p}" for p in part.problems]
        last = _last_record(content)
        if last is None or (last.seq, last.hash) != (manifest.last_seq, manifest.last_hash):
            report.problems.append(f"{manifest.file}: does not end where its manifest says")
    stray = [n for n in await dest.names() if n not in named]
    if stray:
        shown = ", ".join(stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
        report.notes.append(
            f"{len(stray)} file(s) no manifest names, not part of the archive (an archive run "
            f"cut short, or put there by someone else): {shown}"
        )
    return report


def _last_record(lines: list[str]) -> Record | None:
    for line in reversed(lines):
        obj = orjson.loads(line)
        if isinstance(obj, dict) and obj.get("type") != "checkpoint":
            return Record.from_json(obj)
    return None


async def restore_file(
    store: AuditStore, dest: Destination, name: str, check: Callable[[Any], bool]
) -> int:
    """Put the chain of the archive file ``name`` back into the store, once its manifest and
    content verify; returns how many records."""
    lines, _ = await dest.manifests()
    found = [m for m in map(_parse, lines) if m is not None and m.file == name]
    if not found:
        raise ConfigurationError(f"{name}: no manifest names it in {dest.where}")
    manifest = found[-1]
    if not check(manifest):
        raise ConfigurationError(f"{name}: its manifest does not verify (forged or edited)")
    content, problem = await _content(dest, manifest)
    if content is None:
        raise ConfigurationError(f"{name}: its content does not verify: {problem}")
    report = verify_lines(content, check)
    if not report.ok:
        raise ConfigurationError(f"{name}: does not verify: {report.problems[0]}")
    if manifest.chain in await store.chains():
        raise ConfigurationError(f"the chain {manifest.chain} is in the store already")
    records, checkpoints = [], []
    for line in content:
        obj = orjson.loads(line)
        if obj.get("type") == "checkpoint":
            checkpoints.append(Checkpoint.from_json(obj))
        else:
            records.append(Record.from_json(obj))
    await store.insert_rows(records, checkpoints)
    return len(records)
