"""The local vault: envelope-encrypted secrets in the store, under a master key.

``crypto`` seals and opens one secret version (pure), ``master`` loads and creates the master key,
``vault`` is the :class:`Vault` service. See ``docs/vault.md``.
"""

from __future__ import annotations

from .crypto import MasterKey
from .master import create_master_key_file, load_master_key
from .vault import Vault

__all__ = ["MasterKey", "Vault", "create_master_key_file", "load_master_key"]
