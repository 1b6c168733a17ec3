"""Retention and archive: old chains moved out of the store into signed, compressed files.

``keyguard audit archive --to DEST --older-than 30d`` (or the gateway, :mod:`.archiver`) takes
every writer's chain whose last record is older than the cutoff (writers close their chain
every ``chain_max_age_s``, a day, so a running gateway's old records are in closed chains; a
crashed writer's chain stops moving) and, for each, oldest first:

1. writes every record and checkpoint of the chain, as export lines, gzip-compressed (the same
   chain always gives the same bytes), to a temporary file, and creates ``<chain>.jsonl.gz``
   from it in the destination (:mod:`.destination`: a folder, or a Blob Storage container).
   The destination never replaces a file: one of that name with the same bytes (a run cut
   short before its manifest, or another archiver) is taken as it is; one with other bytes
   stops the run with an error naming it, the chain left in the store;
2. appends a **manifest** to ``manifests.jsonl``, signed with the audit key: the file's name,
   length and SHA-256, the chain's last seq and hash, how many records, and the SHA-256 of the
   previous manifest line, so the archives form a chain of their own::

       {"type": "archive", "chain": "...", "file": "....jsonl.gz", "sha256": "...",
        "bytes": 52311, "records": 8123, "last_seq": 8123, "last_hash": "...",
        "created": "...", "prev": "<sha256 of the previous manifest line>", "key_id": "...",
        "signature": "..."}

   The append is conditional on the manifests read before (:class:`.ArchiveConflict` if
   another archiver appended meanwhile); a valid manifest already naming the same file and
   bytes (a run cut short after it) is used instead of a second one;
3. keeps the manifest in the store (``audit_archives``), so ``keyguard audit verify`` knows the
   chain left by archive and checks the head sets naming it against the manifest;
4. once every chain of the run is written (or the run stops on an error), deletes their
   records and checkpoints (on PostgreSQL by dropping the day partitions that hold nothing
   else, :mod:`.partitions`), and head sets older than the cutoff.

A file is only ever trusted through a manifest signed with the audit key, so a partial upload,
a stray file or a replaced blob is never taken for an archive: :mod:`.archive_verify` checks
the manifests and the files they name. The shared chain of versions before chains per writer
is not archived.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import StorageError
from .chain import canonical
from .destination import MANIFESTS, Destination
from .manifest import Manifest
from .rows import iso
from .signing import Signer
from .store import AuditStore

__all__ = ["Manifest", "archive_chains", "file_digest", "MANIFESTS", "GENESIS", "line_digest"]

GENESIS = "0" * 64
_BATCH = 2000  # export lines compressed per step off the event loop


def line_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class _Written:
    records: int = 0
    last_seq: int = 0
    last_hash: str = ""


async def archive_chains(
    store: AuditStore,
    signer: Signer,
    dest: Destination,
    before: datetime,
    now: datetime,
    check: Callable[[Any], bool] | None = None,
) -> list[Manifest]:
    """Move every chain whose last record is older than ``before`` to ``dest``. ``check``
    verifies manifests found in ``dest`` (default: against ``signer``'s key)."""
    check = check or _own_key(signer)
    done: list[Manifest] = []
    lines, version = await dest.manifests()
    try:
        for chain in await store.chains_before(before):
            name = f"{chain}.jsonl.gz"
            with tempfile.TemporaryDirectory(prefix="keyguard-archive-") as tmp:
                path = Path(tmp) / name
                written = await _write_gz(store, chain, path)
                if not written.records:
                    continue
                size, sha = path.stat().st_size, await asyncio.to_thread(file_digest, path)
                if not await dest.create(name, path):
                    await _same_bytes(dest, name, size, sha)
            found = _signed(lines, name, sha, check)
            if found is None:
                prev = line_digest(lines[-1]) if lines else GENESIS
                unsigned = Manifest(chain, name, sha, written.records, written.last_seq,
                                    written.last_hash, iso(now), prev, signer.key_id,
                                    size=size)  # fmt: skip
                manifest = replace(unsigned, signature=signer.signature(unsigned.payload()))
                line = manifest.line()
                version = await dest.append_manifest(line, version)
                lines.append(line)
            else:
                manifest, line = found
            await store.add_archive(chain, now, line)
            done.append(manifest)
    finally:  # together: a day's partitions are dropped whole when nothing else is in them
        await store.delete_chains([m.chain for m in done])
    await store.delete_head_sets(before)
    return done


def _own_key(signer: Signer) -> Callable[[Any], bool]:
    from .signing import load_public_keys, signature_checker

    return signature_checker(load_public_keys([signer.public_pem().encode()]))


def _signed(
    lines: list[str], name: str, sha: str, check: Callable[[Any], bool]
) -> tuple[Manifest, str] | None:
    """The newest valid manifest naming ``name`` with these bytes (a run cut short after its
    manifest was appended), if any."""
    for line in reversed(lines):
        try:
            manifest = Manifest.from_line(line)
        except (ValueError, KeyError, TypeError):
            continue
        if manifest.file == name and manifest.sha256 == sha and check(manifest):
            return manifest, line
    return None


async def _same_bytes(dest: Destination, name: str, size: int, sha: str) -> None:
    """A file named ``name`` is in ``dest`` already: go on only if it holds these bytes."""
    same = await dest.size(name) == size
    if same:
        async with dest.local(name) as there:
            same = await asyncio.to_thread(file_digest, there) == sha
    if not same:
        raise StorageError(
            f"archive {dest.where}: {name} exists with other content (not this chain's "
            "archive): move it away; the chain stays in the store"
        )


async def _write_gz(store: AuditStore, chain: str, path: Path) -> _Written:
    written = _Written()
    with path.open("wb") as raw:
        gz = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="")
        batch: list[bytes] = []
        async for line in _export(store, chain, written):
            batch.append(line.encode() + b"\n")
            if len(batch) >= _BATCH:
                await asyncio.to_thread(gz.write, b"".join(batch))
                batch = []
        await asyncio.to_thread(gz.write, b"".join(batch))
        gz.close()
        raw.flush()
    return written


async def _export(store: AuditStore, chain: str, written: _Written) -> AsyncIterator[str]:
    """The chain's records, each followed by the checkpoints that seal it, as export lines."""
    waiting = store.checkpoints(chain=chain).__aiter__()
    cp = await anext(waiting, None)
    async for record in store.records(chain=chain):
        yield canonical(record.to_json())
        written.records += 1
        written.last_seq, written.last_hash = record.seq, record.hash
        while cp is not None and cp.seq <= record.seq:
            yield canonical(cp.to_json())
            cp = await anext(waiting, None)
    while cp is not None:
        yield canonical(cp.to_json())
        cp = await anext(waiting, None)
