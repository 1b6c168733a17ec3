"""Entra ID tokens as credentials: validate once, then serve from a cache until expiry.

A token is validated fully (:mod:`.tokens`) the first time it is seen; the result is cached
under the SHA-256 digest of the token (never the token itself) until the token's ``exp`` (plus
the configured skew), so on the hot path a token costs one hash and one dict lookup. The cache
is bounded (oldest entries go first). Tokens cannot be revoked before they expire; that is the
nature of bearer JWTs, and why Entra issues them for an hour or so.

The verified token becomes a :class:`~keyguard.core.principal.Principal` through the policy's
directory (names for Entra client ids). Client ids are GUIDs (:mod:`.claims` refuses anything
else), looked up in the directory by GUID only: a client id is never compared with an app's
name, so no token can claim a name the policy gives.

* an app:   ``app:<name>`` (or ``app:<client id>`` when the policy does not name it);
* an agent: ``agent:<name>`` (or its client id), belonging to its parent app; a token is an
  agent's when its client id is declared under ``agents`` or it carries the agent claim
  (``xms_par_app_azp`` by default: the parent application's id);
* a user (delegated token, ``scp``/``idtyp: user``): ``user:<oid>``, belonging to the client app.

The principal is recomputed when the policy changes (its names may have).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.principal import Principal
from ..policy.compiled import Directory
from .claims import GUID
from .tokens import TokenValidator, VerifiedToken, token_failure

__all__ = ["EntraAuthenticator", "principal_for"]


def _guid(value: str) -> str:
    """An unnamed identity's id: a lower-case GUID, or a 401 (never a name)."""
    if not GUID.fullmatch(value):
        raise token_failure("token_claims")
    return value.lower()


def principal_for(token: VerifiedToken, directory: Directory) -> Principal:
    """The principal a verified token stands for, named through ``directory``."""
    client = _guid(token.client_id)
    agent = directory.agents.get(client)
    if agent is not None or token.kind == "agent":
        name, parent_app = agent if agent is not None else (client, None)
        if parent_app is None and token.parent_client_id is not None:
            parent_id = _guid(token.parent_client_id)
            parent_app = directory.apps.get(parent_id) or parent_id
        kind, principal_id = "agent", f"agent:{name}"
        app = parent_app or name
        parent = f"app:{parent_app}" if parent_app else None
    else:
        app = directory.apps.get(client) or client
        parent = None
        if token.kind == "user":
            kind, principal_id = "user", f"user:{_guid(token.object_id)}"
        else:
            kind, principal_id = "app", f"app:{app}"
    return Principal(
        kind,
        principal_id,
        app,
        tenant=token.tenant,
        roles=token.roles,
        groups=token.groups,
        parent=parent,
    )


@dataclass(slots=True)
class _Entry:
    token: VerifiedToken
    principal: Principal
    generation: int
    valid_until: float


class EntraAuthenticator:
    def __init__(
        self,
        validator: TokenValidator,
        *,
        directory: Callable[[], Directory],
        generation: Callable[[], int],
        skew: float,
        max_entries: int = 65536,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._validator = validator
        self._directory = directory
        self._generation = generation
        self._skew = skew
        self._max = max_entries
        self._clock = clock
        self._cache: dict[bytes, _Entry] = {}
        self._purged = 0.0

    def __len__(self) -> int:
        return len(self._cache)

    async def authenticate(self, token: str) -> Principal:
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        entry = self._cache.get(digest)
        if entry is not None and now < entry.valid_until:
            generation = self._generation()
            if entry.generation != generation:
                entry.principal = principal_for(entry.token, self._directory())
                entry.generation = generation
            return entry.principal
        if entry is not None:
            del self._cache[digest]
        verified = await self._validator.validate(token, now)
        generation = self._generation()
        principal = principal_for(verified, self._directory())
        if self._max > 0:
            self._remember(
                digest, _Entry(verified, principal, generation, verified.expires + self._skew)
            )
        return principal

    def _remember(self, digest: bytes, entry: _Entry) -> None:
        if len(self._cache) >= self._max:
            now = self._clock()
            if now - self._purged >= 1.0:  # drop expired entries, at most once a second
                self._purged = now
                for key in [k for k, e in self._cache.items() if e.valid_until <= now]:
                    del self._cache[key]
            while len(self._cache) >= self._max:
                del self._cache[next(iter(self._cache))]
        self._cache[digest] = entry
