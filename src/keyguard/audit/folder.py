"""An archive :class:`~.destination.Destination` in a folder (best on other storage).

A file is copied in under a temporary name, flushed to disk, then hard-linked to its final
name, which fails if that name exists: a file is never replaced and a partial copy never
carries a final name. ``manifests.jsonl`` is appended under an exclusive ``flock``, after
checking that its content is still the one read (its SHA-256 is the version).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from ..errors import ConfigurationError, StorageError
from .destination import MANIFESTS, MAX_MANIFESTS_BYTES, ArchiveConflict, ArchiveMissing, check_name

__all__ = ["FolderDestination"]

_PARTIAL = ".partial-"


class FolderDestination:
    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ConfigurationError(f"the archive folder {str(folder)!r} does not exist")
        self.folder = folder
        self.where = str(folder)

    async def create(self, name: str, source: Path) -> bool:
        return await asyncio.to_thread(self._create, check_name(name), source)

    def _create(self, name: str, source: Path) -> bool:
        final = self.folder / name
        if final.exists():
            return False
        partial = self.folder / f"{_PARTIAL}{uuid.uuid4().hex}-{name}"
        try:
            with source.open("rb") as src, partial.open("xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            try:
                os.link(partial, final)
            except FileExistsError:
                return False
            _fsync_dir(self.folder)
            return True
        except OSError as exc:
            raise StorageError(f"cannot write {final}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                partial.unlink()

    async def manifests(self) -> tuple[list[str], str]:
        data = await asyncio.to_thread(self._read_manifests)
        return _lines(data), hashlib.sha256(data).hexdigest()

    def _read_manifests(self) -> bytes:
        path = self.folder / MANIFESTS
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_MANIFESTS_BYTES + 1)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from None
        if len(data) > MAX_MANIFESTS_BYTES:
            raise StorageError(f"{path} is larger than {MAX_MANIFESTS_BYTES >> 20} MiB")
        return data

    async def append_manifest(self, line: str, version: str) -> str:
        return await asyncio.to_thread(self._append, line, version)

    def _append(self, line: str, version: str) -> str:
        path = self.folder / MANIFESTS
        try:
            with path.open("a+b") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                fh.seek(0)
                data = fh.read(MAX_MANIFESTS_BYTES + 1)
                if hashlib.sha256(data).hexdigest() != version:
                    raise ArchiveConflict(f"{path} changed since it was read (another archiver)")
                if data and not data.endswith(b"\n"):
                    data += b"\n"
                    fh.write(b"\n")
                added = line.encode() + b"\n"
                fh.write(added)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StorageError(f"cannot append to {path}: {exc.strerror}") from None
        return hashlib.sha256(data + added).hexdigest()

    @contextlib.asynccontextmanager
    async def local(self, name: str) -> AsyncIterator[Path]:
        path = self.folder / check_name(name)
        if not path.is_file():
            raise ArchiveMissing(f"{name} is missing")
        yield path

    async def size(self, name: str) -> int | None:
        path = self.folder / check_name(name)
        return path.stat().st_size if path.is_file() else None

    async def names(self) -> list[str]:
        return sorted(
            p.name
            for p in self.folder.iterdir()
            if p.is_file() and p.name != MANIFESTS and not p.name.startswith(".")
        )

    async def close(self) -> None:
        return None


def _lines(data: bytes) -> list[str]:
    return [x for x in data.decode("utf-8", errors="replace").splitlines() if x.strip()]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
