"""The console's sign-in sessions: an opaque id in a cookie, everything else on the server.

A session holds the admin token the operator signed in with (re-verified on every request, so
a revoked or expired token ends its sessions at once), its CSRF token, and two deadlines: an
idle timeout and an absolute lifetime. The table is bounded: when full, the session closest
to its end is dropped. Ids and CSRF tokens are 256-bit random values; the table is keyed by
the SHA-256 of the id, so neither a timing side channel on the lookup nor a dump of the
process's memory gives a usable cookie value. The CSRF check is constant-time.

Sessions live in the process that made them (see docs/console.md, "Sessions").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Session", "SessionTable", "csrf_ok"]

COOKIE = "kg_console"


@dataclass
class Session:
    token: str  # the admin token signed in with: never rendered, never logged
    csrf: str
    created: datetime
    seen: datetime

    def expires(self, idle: timedelta, lifetime: timedelta) -> datetime:
        return min(self.seen + idle, self.created + lifetime)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_ok(session: Session, presented: str | None) -> bool:
    """Whether the form's CSRF token is the session's (compared in constant time)."""
    if not presented or len(presented) > 200:
        return False
    return hmac.compare_digest(session.csrf.encode(), presented.encode())


class SessionTable:
    def __init__(
        self,
        *,
        idle: timedelta = timedelta(minutes=30),
        lifetime: timedelta = timedelta(hours=8),
        max_sessions: int = 1_000,
    ) -> None:
        if max_sessions < 1 or idle <= timedelta(0) or lifetime <= timedelta(0):
            raise ValueError("sessions need a positive size, idle timeout and lifetime")
        self._idle = idle
        self._lifetime = lifetime
        self._max = max_sessions
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, token: str, now: datetime) -> tuple[str, Session]:
        """A new session for ``token``: its id (for the cookie) and the session."""
        self._expire(now)
        while len(self._sessions) >= self._max:
            oldest = min(
                self._sessions,
                key=lambda k: self._sessions[k].expires(self._idle, self._lifetime),
            )
            del self._sessions[oldest]
        session_id = secrets.token_urlsafe(32)
        session = Session(token, secrets.token_urlsafe(32), now, now)
        self._sessions[_digest(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session ``session_id`` names (its idle deadline moved on), or ``None``."""
        if not session_id or len(session_id) > 100:
            return None
        key = _digest(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires(self._idle, self._lifetime) <= now:
            del self._sessions[key]
            return None
        session.seen = now
        return session

    def close(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 100:
            self._sessions.pop(_digest(session_id), None)

    def _expire(self, now: datetime) -> None:
        dead = [
            k for k, s in self._sessions.items() if s.expires(self._idle, self._lifetime) <= now
        ]
        for k in dead:
            del self._sessions[k]
