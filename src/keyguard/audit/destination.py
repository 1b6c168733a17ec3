"""Where archives are kept, behind one small interface: a folder or a Blob Storage container.

:mod:`.archive` writes and reads archives only through a :class:`Destination`::

    created = await dest.create(name, local_file)    # False: a file of that name was there
    lines, version = await dest.manifests()          # the manifest lines, and their version
    version = await dest.append_manifest(line, version)  # ArchiveConflict if they changed
    async with dest.local(name) as path: ...         # the file's bytes, as a local file
    await dest.size(name); await dest.names(); await dest.close()

``create`` never replaces a file and never leaves a partial one under the final name (a
folder: written aside, then linked; a blob: one Put Blob, or blocks committed at once, both
with ``If-None-Match: *``). ``append_manifest`` is a compare-and-swap on the manifests' version
(the folder's content digest under a lock; the append blob's ETag), so of two archivers that
read the same manifests only one appends. :func:`open_destination` picks the implementation by
the target: ``https://`` (or ``http://`` to a loopback emulator) is a container URL, anything
else without a scheme a folder.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from ..core.settings import is_loopback_host
from ..errors import ConfigurationError, StorageError
from .archive_settings import ArchiveSettings, refuse_secret_in_url

__all__ = [
    "ArchiveConflict",
    "ArchiveMissing",
    "Destination",
    "MANIFESTS",
    "MAX_MANIFESTS_BYTES",
    "check_name",
    "open_destination",
]

MANIFESTS = "manifests.jsonl"
MAX_MANIFESTS_BYTES = 64 << 20  # ~100,000 manifests; more is not a Keyguard archive
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


class ArchiveConflict(StorageError):
    """The manifests changed since they were read: another archiver appended first."""


class ArchiveMissing(StorageError):
    """A file a manifest names is not in the archive."""


def check_name(name: str) -> str:
    """``name`` if it is a plain file name (no folder, no leading dot); names come from
    manifests, which a hostile writer of the archive may have written."""
    if not _NAME.fullmatch(name) or name == MANIFESTS:
        raise ConfigurationError(f"{name[:60]!r} is not the name of an archive file")
    return name


class Destination(Protocol):
    where: str  # for messages: the folder or the container URL, never a secret

    async def create(self, name: str, source: Path) -> bool: ...

    async def manifests(self) -> tuple[list[str], str]: ...

    async def append_manifest(self, line: str, version: str) -> str: ...

    def local(self, name: str) -> AbstractAsyncContextManager[Path]: ...

    async def size(self, name: str) -> int | None: ...

    async def names(self) -> list[str]: ...

    async def close(self) -> None: ...


SecretReader = Callable[[str], Awaitable[str]]


def is_url(target: str) -> bool:
    return "://" in target


async def open_destination(
    target: str, settings: ArchiveSettings, secrets: SecretReader | None = None
) -> Destination:
    """The destination ``target`` names (close it); ``secrets`` reads a vault secret by name
    (for ``credential: account_key`` or ``sas``)."""
    if not is_url(target):
        from .folder import FolderDestination

        return FolderDestination(Path(target))
    try:
        refuse_secret_in_url(target)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    parts = urlsplit(target)
    if parts.scheme not in ("https", "http"):
        raise ConfigurationError(
            f"archive destination: unknown scheme {parts.scheme[:20]!r}: use a folder or an "
            "https:// Blob Storage container URL"
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        raise ConfigurationError(
            "archive destination: http:// only to an emulator on this machine; use https://"
        )
    from .blob import open_blob_destination

    return await open_blob_destination(target.rstrip("/"), settings, secrets)
