"""Archive settings (``monitor.audit.archive`` in the config): where the gateway moves old
chains, how old they must be, how often it looks, and how it signs in to Blob Storage.

::

    monitor:
      audit:
        archive:
          to: https://myaccount.blob.core.windows.net/audit   # or a folder: /srv/audit-archive
          older_than: 30d          # retention in the store
          interval_s: 3600         # how often one replica looks for chains to move
          credential: managed_identity                        # or account_key, sas
          identity: {client_id: 00000000-0000-0000-0000-000000000000}
          # vault: storage/audit-archive   # credential account_key or sas: the vault secret

No secret is ever written here: an account key or a SAS lives in the vault, named by ``vault``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ..core.settings import Duration, Frozen
from ..upstream.settings import AzureIdentityRef

__all__ = ["ArchiveSettings", "MIN_AGE", "refuse_secret_in_url"]

# A running writer closes its chain once a day (chain_max_age_s): younger chains may be open.
MIN_AGE = timedelta(days=2)


def refuse_secret_in_url(target: str) -> str:
    """``target`` unless it is a URL carrying a secret (a SAS query, a user and password);
    the error never repeats the secret."""
    if "://" not in target:
        return target
    parts = urlsplit(target)
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(
            "the archive URL carries a query or a user: a SAS or a key is a secret; store it "
            "with 'keyguard vault put NAME' and set monitor.audit.archive.credential: sas and "
            "vault: NAME"
        )
    return target


class ArchiveSettings(Frozen):
    # Where the gateway archives: a folder, or an Azure Blob Storage container URL. None: the
    # gateway does not archive (`keyguard audit archive --to ...` still does).
    to: str | None = None
    older_than: Duration = timedelta(days=30)
    interval_s: float = Field(default=3600, ge=1)
    # How the archiver signs in to Blob Storage: Keyguard's own Entra identity (give it the
    # role "Storage Blob Data Contributor" on the container), or an account key or a SAS kept
    # in the vault under the name ``vault``.
    credential: Literal["managed_identity", "account_key", "sas"] = "managed_identity"
    identity: AzureIdentityRef = AzureIdentityRef()
    vault: str | None = None
    # A CA bundle to trust for the storage endpoint instead of the system store.
    ca_file: str | None = None
    # How long one archive run may hold the archive lease before another replica may take it.
    lease_s: float = Field(default=1800, ge=60)

    @field_validator("to")
    @classmethod
    def _to(cls, v: str | None) -> str | None:
        return None if v is None else refuse_secret_in_url(v)

    @field_validator("older_than")
    @classmethod
    def _older_than(cls, v: timedelta) -> timedelta:
        if v < MIN_AGE:
            raise ValueError("at least 2d: a running writer closes its chain once a day")
        return v

    @model_validator(mode="after")
    def _vault_named(self) -> ArchiveSettings:
        if self.credential != "managed_identity" and not self.vault:
            raise ValueError(
                f"credential {self.credential}: name the vault secret holding it (vault: NAME)"
            )
        return self
