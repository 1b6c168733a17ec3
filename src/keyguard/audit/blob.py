"""An archive :class:`~.destination.Destination` in an Azure Blob Storage container
(``azure-storage-blob``).

* An archive file is one block blob, uploaded with ``If-None-Match: *``: one Put Blob, or
  blocks that only become the blob when their list is committed, so a cut upload leaves no blob
  (or an unnamed, uncommitted one) and an existing blob is never replaced.
* The manifests are one append blob, ``manifests.jsonl``, created with ``If-None-Match: *`` and
  appended with ``If-Match: <ETag read>``: of two archivers that read the same manifests, one
  appends and the other gets :class:`~.destination.ArchiveConflict`.
* Reads are bounded: the manifests at 64 MiB, an archive file streamed to a temporary file.

The SDK's errors become one line naming the blob and Azure's error code, never a secret:
every message passes :meth:`BlobDestination.scrub`, which removes the account key and the SAS
the destination was opened with.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..errors import GatewayError, StorageError
from .archive_settings import ArchiveSettings
from .blob_auth import BlobCredential, blob_credential
from .destination import (
    MANIFESTS,
    MAX_MANIFESTS_BYTES,
    ArchiveConflict,
    ArchiveMissing,
    SecretReader,
    check_name,
)

__all__ = ["BlobDestination", "open_blob_destination"]

_TIMEOUTS = {"connection_timeout": 20, "read_timeout": 120, "retry_total": 3}
# The SDK logs every request and answer at INFO (URLs with their SAS redacted); an archive
# round makes dozens. They go to this logger, quiet unless an operator lowers its level.
_HTTP_LOG = logging.getLogger("keyguard.audit.blob.http")
_HTTP_LOG.setLevel(logging.WARNING)


async def open_blob_destination(
    url: str, settings: ArchiveSettings, secrets: SecretReader | None
) -> BlobDestination:
    from azure.storage.blob.aio import ContainerClient

    credential = await blob_credential(url, settings, secrets)
    kwargs: dict[str, Any] = {**_TIMEOUTS, "logger": _HTTP_LOG}
    if settings.ca_file:
        kwargs["connection_verify"] = settings.ca_file
    try:
        client = ContainerClient.from_container_url(url, credential=credential.sdk, **kwargs)
    except ValueError as exc:
        await credential.close()
        message = f"archive {url}: not a container URL ({credential.scrub(str(exc))})"
        raise StorageError(message) from None
    return BlobDestination(url, client, credential)


class BlobDestination:
    def __init__(self, url: str, client: Any, credential: BlobCredential) -> None:
        self.where = url
        self._client = client
        self._credential = credential

    def scrub(self, text: str) -> str:
        return self._credential.scrub(text)

    def _error(self, what: str, exc: Exception) -> StorageError:
        code = getattr(exc, "error_code", None)
        code = str(getattr(code, "value", code) or getattr(exc, "status_code", "") or "")
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        detail = f"{type(exc).__name__}" + (f" {code}" if code else "") + f": {first}"
        hint = ""
        if code.startswith(("Authentication", "InvalidAuthentication", "Authorization")):
            hint = f" ({self._credential.hint})"
        elif code == "ContainerNotFound":
            hint = " (create the container first)"
        return StorageError(self.scrub(f"archive {self.where}: cannot {what}: {detail}{hint}"))

    async def create(self, name: str, source: Path) -> bool:
        from azure.core.exceptions import ResourceExistsError

        blob = self._client.get_blob_client(check_name(name))
        try:
            with source.open("rb") as fh:
                await blob.upload_blob(
                    fh, length=source.stat().st_size, overwrite=False, max_concurrency=1
                )
        except ResourceExistsError:
            return False
        except GatewayError:
            raise
        except Exception as exc:
            raise self._error(f"upload {name}", exc) from None
        return True

    async def manifests(self) -> tuple[list[str], str]:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._client.get_blob_client(MANIFESTS)
        try:
            download = await blob.download_blob()
            if download.size > MAX_MANIFESTS_BYTES:
                raise StorageError(
                    f"archive {self.where}: {MANIFESTS} is larger than "
                    f"{MAX_MANIFESTS_BYTES >> 20} MiB: not a Keyguard archive"
                )
            data = await download.readall()
            etag = str(download.properties.etag)
        except ResourceNotFoundError:
            return [], ""
        except GatewayError:
            raise
        except Exception as exc:
            raise self._error(f"read {MANIFESTS}", exc) from None
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)
        return [x for x in text.splitlines() if x.strip()], etag

    async def append_manifest(self, line: str, version: str) -> str:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        blob = self._client.get_blob_client(MANIFESTS)
        try:
            if not version:
                created = await blob.create_append_blob(match_condition=MatchConditions.IfMissing)
                version = str(created["etag"])
            answer = await blob.append_block(
                (line + "\n").encode(), etag=version, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceExistsError, ResourceModifiedError):
            raise ArchiveConflict(
                f"archive {self.where}: {MANIFESTS} changed since it was read (another archiver)"
            ) from None
        except Exception as exc:
            raise self._error(f"append to {MANIFESTS}", exc) from None
        return str(answer["etag"])

    @contextlib.asynccontextmanager
    async def local(self, name: str) -> AsyncIterator[Path]:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._client.get_blob_client(check_name(name))
        with tempfile.TemporaryDirectory(prefix="keyguard-archive-") as folder:
            path = Path(folder) / name
            try:
                download = await blob.download_blob(max_concurrency=1)
                with path.open("wb") as fh:
                    async for chunk in download.chunks():
                        fh.write(chunk)
            except ResourceNotFoundError:
                raise ArchiveMissing(f"{name} is missing") from None
            except Exception as exc:
                raise self._error(f"read {name}", exc) from None
            yield path

    async def size(self, name: str) -> int | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            props = await self._client.get_blob_client(check_name(name)).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise self._error(f"read {name}", exc) from None
        return int(props.size)

    async def names(self) -> list[str]:
        try:
            return sorted([n async for n in self._client.list_blob_names() if n != MANIFESTS])
        except Exception as exc:
            raise self._error("list the container", exc) from None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.close()
        await self._credential.close()
