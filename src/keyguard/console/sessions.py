"""The console's sign-in sessions: an opaque id in a cookie, everything else on the server.

A session is of one of two kinds. An admin-token session holds the id of the admin token the
operator signed in with (never the token: the token's record is looked up again on every
request, so a revoked or expired token ends its sessions at once). An Entra ID session holds
the identity's object id, the admin role its access token gave, and that token's expiry,
where the session ends (:class:`EntraIdentity`; the tokens themselves are not kept). Both
hold a CSRF token and two deadlines: an idle timeout and an absolute lifetime. Ids and CSRF
tokens are 256-bit random values; sessions are kept under the SHA-256 of the id, so neither
a timing side channel on the lookup nor a copy of the table gives a usable cookie value. The
CSRF check is constant-time.

A session id carries a MAC (HMAC-SHA-256 under a key the store does not hold: the vault's,
shared by every process) over its random part and what the session grants: the admin token's
id, or the Entra identity's object id, role and end. A row a hostile store writer inserts, a
viewer's row raised to admin, or an Entra row whose end was pushed back, matches no cookie the
console issued, and is no session.

:class:`Sessions` is the contract; :class:`MemorySessions` keeps them in one process (tests,
a store without SQL), :class:`~.sql_sessions.SqlSessions` in the store, shared by every
worker and replica. Both are bounded twice, so that signing in again and again (anyone holding
a valid credential can) neither fills the table nor ends anyone else's session: one actor (an
admin token, an Entra identity) has at most ``max_per_actor`` live sessions, its oldest ending
when it opens one more; and the table holds at most ``max_sessions``, a sign-in finding it full
of live sessions being refused (:class:`~keyguard.errors.ServiceUnavailable`), never making
room by ending another actor's session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from ..errors import ServiceUnavailable

__all__ = [
    "COOKIE",
    "SECURE_COOKIE",
    "EntraIdentity",
    "MemorySessions",
    "Session",
    "Sessions",
    "actor_key",
    "csrf_ok",
    "digest",
    "issued",
    "new_session",
]

COOKIE = "kg_console"
SECURE_COOKIE = "__Host-kg_console"  # the name when the cookie is Secure (HTTPS)
IDLE = timedelta(minutes=30)
LIFETIME = timedelta(hours=8)
MAX_SESSIONS = 1_000
MAX_PER_ACTOR = 5


@dataclass(frozen=True, slots=True)
class EntraIdentity:
    """Who an Entra ID session stands for: an object id, a role, and the access token's end."""

    object_id: str
    role: str
    ends: datetime


@dataclass
class Session:
    token_id: str  # the id of the admin token signed in with (not a secret); "" for Entra
    csrf: str
    created: datetime
    seen: datetime
    entra: EntraIdentity | None = None

    def expires(self, idle: timedelta, lifetime: timedelta) -> datetime:
        end = min(self.seen + idle, self.created + lifetime)
        return end if self.entra is None else min(end, self.entra.ends)


def actor_key(token_id: str, entra: EntraIdentity | None) -> str:
    """Whose session it is: the admin token's id, or the Entra identity's object id."""
    return f"entra:{entra.object_id}" if entra is not None else f"admin-token:{token_id}"


def full() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The console has too many open sessions; sign in again later, or sign out elsewhere.",
        reason="console_sessions_full",
    )


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _mac(key: bytes, nonce: str, session: Session) -> str:
    entra = session.entra
    grant = (
        session.token_id,
        entra.object_id if entra else "",
        entra.role if entra else "",
        str(int(entra.ends.timestamp())) if entra else "",
    )
    message = "\0".join(("console-session", nonce, *grant)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def new_session(
    token_id: str, now: datetime, entra: EntraIdentity | None = None, *, key: bytes
) -> tuple[str, Session]:
    """A fresh session id (for the cookie: random part and MAC) and its session."""
    session = Session(token_id, secrets.token_urlsafe(32), now, now, entra)
    nonce = secrets.token_urlsafe(32)
    return f"{nonce}.{_mac(key, nonce, session)}", session


def issued(key: bytes, session_id: str, session: Session) -> bool:
    """Whether ``session_id`` is the id the console issued for ``session`` as it now stands
    (its MAC over what the session grants holds; compared in constant time)."""
    nonce, _, mac = session_id.partition(".")
    return bool(mac) and hmac.compare_digest(mac.encode(), _mac(key, nonce, session).encode())


def plausible(session_id: str | None) -> bool:
    """Whether a cookie's value may be a session id at all (no lookup for anything else)."""
    return bool(session_id) and len(session_id or "") <= 200


class Sessions(Protocol):
    async def open(
        self, token_id: str, now: datetime, entra: EntraIdentity | None = None
    ) -> tuple[str, Session]:
        """A new session for the admin token ``token_id`` (``""`` with ``entra``, the Entra
        identity signed in): its id (for the cookie) and it. The actor's oldest session ends
        when it has ``max_per_actor``; raises :class:`~keyguard.errors.ServiceUnavailable`
        when the table is full of live sessions."""
        ...

    async def get(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session ``session_id`` names (its idle deadline moved on), or ``None``."""
        ...

    async def close(self, session_id: str | None) -> None: ...


def csrf_ok(session: Session, presented: str | None) -> bool:
    """Whether the form's CSRF token is the session's (compared in constant time)."""
    if not presented or len(presented) > 200:
        return False
    return hmac.compare_digest(session.csrf.encode(), presented.encode())


class MemorySessions:
    def __init__(
        self,
        *,
        idle: timedelta = IDLE,
        lifetime: timedelta = LIFETIME,
        max_sessions: int = MAX_SESSIONS,
        max_per_actor: int = MAX_PER_ACTOR,
        key: bytes | None = None,
    ) -> None:
        if min(max_sessions, max_per_actor) < 1 or min(idle, lifetime) <= timedelta(0):
            raise ValueError("sessions need a positive size, idle timeout and lifetime")
        self._key = key or secrets.token_bytes(32)  # this process's alone when not given
        self._idle = idle
        self._lifetime = lifetime
        self._max = max_sessions
        self._per_actor = max_per_actor
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    async def open(
        self, token_id: str, now: datetime, entra: EntraIdentity | None = None
    ) -> tuple[str, Session]:
        self._expire(now)
        actor = actor_key(token_id, entra)
        mine = sorted(
            (k for k, s in self._sessions.items() if actor_key(s.token_id, s.entra) == actor),
            key=lambda k: self._sessions[k].created,
        )
        for oldest in mine[: max(0, len(mine) - self._per_actor + 1)]:
            del self._sessions[oldest]
        if len(self._sessions) >= self._max:
            raise full()
        session_id, session = new_session(token_id, now, entra, key=self._key)
        self._sessions[digest(session_id)] = session
        return session_id, session

    async def get(self, session_id: str | None, now: datetime) -> Session | None:
        if session_id is None or not plausible(session_id):
            return None
        key = digest(session_id)
        session = self._sessions.get(key)
        if session is None or not issued(self._key, session_id, session):
            return None
        if session.expires(self._idle, self._lifetime) <= now:
            del self._sessions[key]
            return None
        session.seen = now
        return session

    async def close(self, session_id: str | None) -> None:
        if session_id is not None and plausible(session_id):
            self._sessions.pop(digest(session_id), None)

    def _expire(self, now: datetime) -> None:
        dead = [
            k for k, s in self._sessions.items() if s.expires(self._idle, self._lifetime) <= now
        ]
        for k in dead:
            del self._sessions[k]
