"""Run the engine over a tree, a git history or the staged changes; optionally in parallel.

Parallelism is per chunk of files (a few MB each) in a process pool; each worker reads and
scans its files and returns findings only, never file contents or secrets. Small scans stay
in-process, where the pool would cost more than it saves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from keyguard.scan.engine import scan_bytes
from keyguard.scan.findings import Finding
from keyguard.scan.gitclone import (
    HistoryCoverage,
    clone_state,
    coverage_of,
    fetch_missing,
    verify_since,
)
from keyguard.scan.gitscan import BlobSkip, git_env, history_listing, read_blobs, staged_blobs
from keyguard.scan.walker import (
    DEFAULT_MAX_SIZE,
    FileEntry,
    is_binary_data,
    is_excluded,
    iter_files,
    read_text_file,
    root_prefixes,
    skip_by_name,
)

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["ScanStats", "scan_history", "scan_staged", "scan_tree"]

CHUNK_BYTES = 4 * 1024 * 1024
PARALLEL_MIN_BYTES = 16 * 1024 * 1024
PARALLEL_MIN_BLOBS = 500


@dataclass(slots=True)
class ScanStats:
    files: int = 0
    bytes: int = 0
    skipped: int = 0
    extra: dict[str, int] = field(default_factory=dict)
    coverage: list[HistoryCoverage] = field(default_factory=list)  # one per history scanned


def _scan_files(entries: Sequence[tuple[str, str]], key: bytes) -> tuple[list[Finding], int, int]:
    findings: list[Finding] = []
    scanned = size = 0
    for path, rel in entries:
        data = read_text_file(FileEntry(path, rel, 0))
        if data is None:
            continue
        scanned += 1
        size += len(data)
        findings.extend(scan_bytes(data, rel, key))
    return findings, scanned, size


def _scan_blobs(items: Sequence[tuple[bytes, str]], key: bytes) -> list[list[Finding]]:
    return [scan_bytes(data, path, key) for data, path in items]


def _chunks(entries: Iterable[FileEntry], limit: int) -> Iterator[list[FileEntry]]:
    chunk: list[FileEntry] = []
    size = 0
    for entry in entries:
        chunk.append(entry)
        size += entry.size
        if size >= limit or len(chunk) >= 2000:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _jobs(jobs: int) -> int:
    return jobs if jobs > 0 else (os.cpu_count() or 1)


def _pool(workers: int) -> ProcessPoolExecutor:
    """A pool whose workers do not inherit this process's file descriptors.

    Forked workers would keep the write end of ``git cat-file``'s stdin open, so git would
    never see end-of-input; the forkserver starts workers from a clean process instead.
    Imported here: small scans never start a pool, so they do not pay for the import.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    method = "forkserver" if "forkserver" in methods else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def scan_tree(
    roots: Sequence[Path],
    key: bytes,
    excludes: Sequence[str] = (),
    max_size: int = DEFAULT_MAX_SIZE,
    jobs: int = 0,
    stats: ScanStats | None = None,
) -> list[Finding]:
    """Findings in every scannable file under ``roots`` (paths as ``walker`` reports them)."""
    stats = stats if stats is not None else ScanStats()
    entries = [
        e
        for root, prefix in zip(roots, root_prefixes(roots), strict=True)
        for e in iter_files(root, excludes, max_size, prefix)
    ]
    total = sum(e.size for e in entries)
    workers = _jobs(jobs)
    findings: list[Finding] = []
    if workers <= 1 or total < PARALLEL_MIN_BYTES:
        found, n, size = _scan_files([(e.path, e.rel) for e in entries], key)
        findings.extend(found)
        stats.files, stats.bytes = stats.files + n, stats.bytes + size
    else:
        limit = max(256 * 1024, min(CHUNK_BYTES, total // (workers * 8) + 1))
        with _pool(workers) as pool:
            futures = [
                pool.submit(_scan_files, [(e.path, e.rel) for e in chunk], key)
                for chunk in _chunks(entries, limit)
            ]
            for fut in futures:
                found, n, size = fut.result()
                findings.extend(found)
                stats.files, stats.bytes = stats.files + n, stats.bytes + size
    stats.skipped += len(entries) - stats.files
    findings.sort(key=lambda f: (f.file, f.line, f.kind))
    return findings


def _blob_batches(
    items: Iterator[tuple[bytes, str]], limit: int
) -> Iterator[list[tuple[bytes, str]]]:
    batch: list[tuple[bytes, str]] = []
    size = 0
    for item in items:
        batch.append(item)
        size += len(item[0])
        if size >= limit:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _scan_blob_stream(
    pairs: Iterator[tuple[bytes, str]], key: bytes, jobs: int, big: bool
) -> Iterator[list[Finding]]:
    workers = _jobs(jobs)
    if workers <= 1 or not big:
        for data, path in pairs:
            yield scan_bytes(data, path, key)
        return
    with _pool(workers) as pool:
        pending = []
        for batch in _blob_batches(pairs, CHUNK_BYTES):
            pending.append(pool.submit(_scan_blobs, batch, key))
            if len(pending) > workers * 2:
                yield from pending.pop(0).result()
        for fut in pending:
            yield from fut.result()


def scan_history(
    repo: Path,
    key: bytes,
    since: str | None = None,
    excludes: Sequence[str] = (),
    max_size: int = DEFAULT_MAX_SIZE,
    jobs: int = 0,
    stats: ScanStats | None = None,
    fetch: bool = False,
) -> list[Finding]:
    """Findings in every blob of the history, each at the commit that introduced it.

    Never fetches unless ``fetch``; what the clone lacks (shallow history, missing objects)
    is recorded in ``stats.coverage`` (see ``keyguard.scan.gitclone``).
    """
    stats = stats if stats is not None else ScanStats()
    env = git_env(fetch)
    state = clone_state(repo, env)
    if since:
        verify_since(repo, since, state, env)
    listing = history_listing(repo, since, env)
    fetched, fetch_error = 0, None
    if fetch and listing.absent:
        listing, fetched, fetch_error = fetch_missing(repo, since, state, listing, env)
    coverage = coverage_of(repo, listing, state, env)
    coverage.fetched, coverage.fetch_error = fetched, fetch_error
    stats.coverage.append(coverage)
    blobs = [
        b for b in listing.blobs if not skip_by_name(b.path) and not is_excluded(b.path, excludes)
    ]
    coverage.missing = [
        b
        for b in coverage.missing
        if not skip_by_name(b.path) and not is_excluded(b.path, excludes)
    ]
    by_oid = {b.oid: b for b in blobs}
    stats.extra["blobs"] = stats.extra.get("blobs", 0) + len(blobs)
    order: list[str] = []

    def contents() -> Iterator[tuple[bytes, str]]:
        for oid, data in read_blobs(repo, (b.oid for b in blobs), max_size, env):
            if data is BlobSkip.MISSING:
                coverage.missing.append(by_oid[oid])
                continue
            if not isinstance(data, bytes) or is_binary_data(data):
                stats.skipped += 1
                continue
            stats.files += 1
            stats.bytes += len(data)
            order.append(oid)
            yield data, by_oid[oid].path

    best: dict[tuple[str, str], Finding] = {}
    rank: dict[tuple[str, str], int] = {}
    for i, found in enumerate(
        _scan_blob_stream(contents(), key, jobs, big=len(blobs) > PARALLEL_MIN_BLOBS)
    ):
        blob = by_oid[order[i]]
        for f in found:
            ident = (f.file, f.fingerprint)
            if ident not in best or blob.order < rank[ident]:
                best[ident] = f.with_location(blob.path, blob.commit)
                rank[ident] = blob.order
    boundary = state.shallow & listing.commits
    return sorted(
        (_at_boundary(f) if f.commit in boundary else f for f in best.values()),
        key=lambda f: (f.file, f.line, f.kind),
    )


def _at_boundary(f: Finding) -> Finding:
    """A finding at a shallow boundary commit may have been introduced before it."""
    note = "introduced at or before this commit (older history not in this clone)"
    return replace(f, detail=f"{f.detail}; {note}" if f.detail else note)


def scan_staged(
    repo: Path,
    key: bytes,
    excludes: Sequence[str] = (),
    max_size: int = DEFAULT_MAX_SIZE,
    stats: ScanStats | None = None,
    reader: Callable[
        [Path, Iterable[str], int], Iterator[tuple[str, bytes | BlobSkip]]
    ] = read_blobs,
) -> list[Finding]:
    """Findings in the staged (index) version of every added or modified file."""
    stats = stats if stats is not None else ScanStats()
    paths = [p for p in staged_blobs(repo) if not skip_by_name(p) and not is_excluded(p, excludes)]
    findings: list[Finding] = []
    for spec, data in reader(repo, (f":{p}" for p in paths), max_size):
        if not isinstance(data, bytes) or is_binary_data(data):
            stats.skipped += 1
            continue
        stats.files += 1
        stats.bytes += len(data)
        findings.extend(scan_bytes(data, spec[1:], key))
    return findings
