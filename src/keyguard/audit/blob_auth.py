"""How the archiver signs in to Blob Storage: Keyguard's Entra identity (the default: no secret
at all), or an account key or a SAS read from the vault by the name the settings give.

The secret is held only by the SDK credential and by :meth:`BlobCredential.scrub`, which
removes it (and its URL-encoded form) from any text before that text is logged or raised.
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from ..errors import ConfigurationError, GatewayError
from ..upstream.azure_credentials import identity_credential
from .archive_settings import ArchiveSettings
from .destination import SecretReader

__all__ = ["BlobCredential", "blob_credential", "account_name"]

STORAGE_SCOPE = "https://storage.azure.com/.default"


@dataclass
class BlobCredential:
    sdk: Any  # what azure-storage-blob takes as ``credential``
    secrets: tuple[str, ...] = ()
    closers: list[Any] = field(default_factory=list)
    hint: str = "give Keyguard's identity the role Storage Blob Data Contributor on the container"

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            for form in {secret, quote(secret, safe=""), quote(secret, safe="=&")}:
                if form:
                    text = text.replace(form, "[secret]")
        return text

    async def close(self) -> None:
        for closer in self.closers:
            with contextlib.suppress(Exception):
                await closer.close()


def account_name(url: str) -> str:
    """The storage account of a container URL: the host's first label
    (``acct.blob.core.windows.net``), or the path's first segment on an IP address or
    ``localhost`` (the emulator's ``http://127.0.0.1:10000/devstoreaccount1/container``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        by_path = True
    except ValueError:
        by_path = host == "localhost"
    name = parts.path.strip("/").split("/")[0] if by_path else host.split(".")[0]
    if not name:
        raise ConfigurationError(f"archive {url}: no storage account in the URL")
    return name


async def blob_credential(
    url: str, settings: ArchiveSettings, secrets: SecretReader | None
) -> BlobCredential:
    if settings.credential == "managed_identity":
        identity = identity_credential(settings.identity)
        return BlobCredential(identity, closers=[identity])
    from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential

    name = settings.vault or ""
    if secrets is None:
        raise ConfigurationError(
            f"archive {url}: credential {settings.credential} needs the vault (a config file "
            "with the vault's master key)"
        )
    try:
        value = (await secrets(name)).strip()
    except GatewayError:
        raise ConfigurationError(
            f"monitor.audit.archive.vault: store the {settings.credential.replace('_', ' ')} in "
            f"the vault as {name!r} (keyguard vault put {name})"
        ) from None
    if not value:
        raise ConfigurationError(f"the vault secret {name!r} is empty")
    hint = (
        f"the {settings.credential.replace('_', ' ')} in the vault secret {name!r} is wrong, "
        f"expired or lacks a permission: keyguard vault put {name}"
    )
    if settings.credential == "sas":
        sas = value.lstrip("?")
        return BlobCredential(AzureSasCredential(sas), secrets=(value, sas), hint=hint)
    key = AzureNamedKeyCredential(account_name(url), value)
    return BlobCredential(key, secrets=(value,), hint=hint)
