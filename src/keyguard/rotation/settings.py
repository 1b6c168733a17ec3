"""Configuration of upstream credentials, of the Azure management plane and of rotation.

These models hang off :class:`keyguard.config.Settings` (``rotation:``), its
``CredentialRef`` (``managed_identity:``, ``key_vault:``) and each upstream (``management:``)::

    rotation:
      credential_refresh_s: 5        # every replica re-reads its upstream key this often
      drain_s: 10                    # after every replica switched, before the old key dies
    upstreams:
      - name: east
        endpoint: https://east.openai.azure.com
        credential: {key_vault: {vault_url: https://kv-east.vault.azure.net, secret_name: aoai}}
        management:
          subscription_id: 00000000-0000-0000-0000-000000000000
          resource_group: rg-ai
          account_name: east
          key_max_age: 30d

Durations are written ``30d``, ``12h``, ``30m``, ``45s`` or as a number of seconds. Nothing here
is a secret: identities are ids, keys stay in a vault.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from ..core.settings import Duration, Frozen

__all__ = ["RotationSettings"]


class RotationSettings(Frozen):
    """How rotations run; the defaults suit production."""

    #: run the scheduler, security-event triggers and key-expiry alerts inside the gateway
    enabled: bool = True
    #: how often the scheduler looks at key ages, unfinished rotations and expiring keys
    check_interval: Duration = timedelta(minutes=5)
    #: every replica re-reads its upstream key at least this often: the switch-over bound
    credential_refresh_s: float = Field(default=5.0, gt=0, le=300)
    #: how long the runner waits for every live replica to serve the new key, then stalls
    switch_timeout: Duration = timedelta(minutes=2)
    #: after every replica switched, wait this long before regenerating the old key, so
    #: requests that took the old key just before the switch reach Azure first
    drain: Duration = timedelta(seconds=10)
    #: a rotation holds a lease this long (renewed while it runs); a crashed one is resumed after
    lease: Duration = timedelta(seconds=60)
    #: cheap data-plane calls that must accept the new key before it goes into service
    verify_attempts: int = Field(default=5, ge=1, le=20)
    verify_backoff: Duration = timedelta(seconds=2)
    #: rotate an upstream when a security event names it (a leaked or presented Azure key)
    on_security_event: bool = True
    #: Keyguard keys: default grace period of the previous secret after ``keys rotate``
    key_grace: Duration = timedelta(hours=24)
    #: Keyguard keys older than this (since their last rotation) expire; None: no maximum
    key_max_age: Duration | None = None
    #: alert when a Keyguard key expires within this window
    key_expiry_warning: Duration = timedelta(days=7)
