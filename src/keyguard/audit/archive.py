"""Retention and archive: old chains moved out of the store into signed, compressed files.

``keyguard audit archive --to DIR --older-than 30d`` takes every writer's chain whose last
record is older than the cutoff (writers close their chain every ``chain_max_age_s``, a day, so
a running gateway's old records are in closed chains; a crashed writer's chain stops moving)
and, for each, oldest first:

1. writes every record and checkpoint of the chain, as export lines, to
   ``DIR/<chain>.jsonl.gz`` (written to a temporary name, flushed to disk, then renamed);
2. appends a **manifest** to ``DIR/manifests.jsonl``, signed with the audit key: the file's
   name and SHA-256, the chain's last seq and hash, how many records, and the SHA-256 of the
   previous manifest line, so the archives form a chain of their own::

       {"type": "archive", "chain": "...", "file": "....jsonl.gz", "sha256": "...",
        "records": 8123, "last_seq": 8123, "last_hash": "...", "created": "...",
        "prev": "<sha256 of the previous manifest line>", "key_id": "...", "signature": "..."}

3. keeps the manifest in the store (``audit_archives``), so ``keyguard audit verify`` knows the
   chain left by archive and checks the head sets naming it against the manifest;
4. once every chain is written, deletes their records and checkpoints (on PostgreSQL by
   dropping the day partitions that hold nothing else, :mod:`.partitions`), and head sets
   older than the cutoff.

``keyguard audit verify --archive DIR`` checks every manifest (signature, link to the one
before, the file's SHA-256) and every file as an export (its chain, checkpoints, and that it
ends where its manifest says). ``keyguard audit restore DIR/FILE`` puts a verified file's
chain back into the store. The shared chain of versions before chains per writer is not
archived.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigurationError
from .chain import Checkpoint, Record, canonical
from .export import verify_lines
from .manifest import Manifest
from .signing import Signer
from .store import AuditStore, iso
from .verify import VerifyReport

__all__ = ["Manifest", "archive_chains", "verify_archive", "restore_file", "MANIFESTS"]

MANIFESTS = "manifests.jsonl"
_GENESIS = "0" * 64


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifests(folder: Path) -> list[str]:
    path = folder / MANIFESTS
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.strip()]


async def archive_chains(
    store: AuditStore, signer: Signer, folder: Path, before: datetime, now: datetime
) -> list[Manifest]:
    """Move every chain whose last record is older than ``before`` to ``folder``."""
    if not folder.is_dir():
        raise ConfigurationError(f"the archive folder {str(folder)!r} does not exist")
    done: list[Manifest] = []
    lines = _manifests(folder)
    prev = _digest(lines[-1]) if lines else _GENESIS
    for chain in await store.chains_before(before):
        records = [r async for r in store.records(chain=chain)]
        checkpoints = [cp async for cp in store.checkpoints(chain=chain)]
        if not records:
            continue
        name = f"{chain}.jsonl.gz"
        path = folder / name
        if path.exists():
            raise ConfigurationError(f"{path} exists already: restore or move it first")
        _write_gz(path, _export(records, checkpoints))
        last = records[-1]
        unsigned = Manifest(chain, name, _file_digest(path), len(records), last.seq, last.hash,
                            iso(now), prev, signer.key_id)  # fmt: skip
        manifest = replace(unsigned, signature=signer.signature(unsigned.payload()))
        line = manifest.line()
        with (folder / MANIFESTS).open("a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        await store.add_archive(chain, now, line)
        prev = _digest(line)
        done.append(manifest)
    await store.delete_chains([m.chain for m in done])  # whole partitions where it can
    await store.delete_head_sets(before)
    return done


def _export(records: list[Record], checkpoints: list[Checkpoint]) -> Iterator[str]:
    waiting = iter(checkpoints)
    cp = next(waiting, None)
    for record in records:
        yield canonical(record.to_json())
        while cp is not None and cp.seq <= record.seq:
            yield canonical(cp.to_json())
            cp = next(waiting, None)
    while cp is not None:
        yield canonical(cp.to_json())
        cp = next(waiting, None)


def _write_gz(path: Path, lines: Iterator[str]) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for line in lines:
                gz.write(line.encode() + b"\n")
        raw.flush()
        os.fsync(raw.fileno())
    partial.rename(path)


def _read_gz(path: Path) -> list[str]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return fh.read().splitlines()
    except (OSError, EOFError) as exc:
        raise ConfigurationError(f"{path.name}: not a readable archive ({exc})") from None


def verify_archive(folder: Path, check: Callable[[Any], bool]) -> VerifyReport:
    """Every manifest in ``folder`` and every file it names."""
    report = VerifyReport()
    prev = _GENESIS
    for number, line in enumerate(_manifests(folder), 1):
        where = f"{MANIFESTS}:{number}"
        try:
            manifest = Manifest.from_line(line)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            report.problems.append(f"{where}: not an archive manifest")
            prev = _digest(line)
            continue
        if not check(manifest):
            report.problems.append(f"{where}: its signature is not valid (forged or edited)")
        if manifest.prev != prev:
            report.problems.append(
                f"{where}: does not follow the manifest before it (one was removed, inserted "
                "or reordered)"
            )
        prev = _digest(line)
        report.chains += 1
        path = folder / Path(manifest.file).name
        if not path.exists():
            report.problems.append(f"{where}: its file {manifest.file} is missing")
            continue
        if _file_digest(path) != manifest.sha256:
            report.problems.append(f"{manifest.file}: its SHA-256 is not the manifest's (changed)")
            continue
        part = verify_lines(_read_gz(path), check)
        report.records += part.records
        report.checkpoints += part.checkpoints
        report.problems += [f"{manifest.file}: {p}" for p in part.problems]
        records = [Record.from_json(orjson.loads(x)) for x in _read_gz(path) if '"record"' in x]
        last = records[-1] if records else None
        if last is None or (last.seq, last.hash) != (manifest.last_seq, manifest.last_hash):
            report.problems.append(f"{manifest.file}: does not end where its manifest says")
    return report


async def restore_file(store: AuditStore, path: Path, check: Callable[[Any], bool]) -> int:
    """Put the chain of an archive file back into the store, once its manifest and content
    verify; returns how many records."""
    folder = path.parent
    manifests = [m for m in map(Manifest.from_line, _manifests(folder)) if m.file == path.name]
    if not manifests:
        raise ConfigurationError(f"{path.name}: no manifest names it in {folder / MANIFESTS}")
    manifest = manifests[-1]
    if not check(manifest) or _file_digest(path) != manifest.sha256:
        raise ConfigurationError(f"{path.name}: its manifest or its content does not verify")
    lines = _read_gz(path)
    report = verify_lines(lines, check)
    if not report.ok:
        raise ConfigurationError(f"{path.name}: does not verify: {report.problems[0]}")
    if manifest.chain in await store.chains():
        raise ConfigurationError(f"the chain {manifest.chain} is in the store already")
    records, checkpoints = [], []
    for line in lines:
        obj = orjson.loads(line)
        if obj.get("type") == "checkpoint":
            checkpoints.append(Checkpoint.from_json(obj))
        else:
            records.append(Record.from_json(obj))
    await store.insert_rows(records, checkpoints)
    return len(records)
