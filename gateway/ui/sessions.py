"""The admin UI's sign-ins, kept in the store so that every worker and instance knows them, and a sign-out
or an expiry holds everywhere at once.

The browser holds a random session id; the store keeps only its hash, with what signed in (`role`: the
master key, the UI password, or a virtual key) and a fingerprint of that credential (`subject`): a changed
master key or password ends the sessions it made, and a key's session stands only while the key would be
let through."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Literal

import msgspec

from gateway.store.database import Database

Role = Literal["master", "password", "key"]
# Signed in for at most this long, however busy; the cookie says the same, but the store decides.
SESSION_SECONDS = 12 * 3600


class Session(msgspec.Struct, frozen=True, kw_only=True):
    session_hash: str
    role: Role
    subject: str
    csrf: str
    created_at: float
    expires_at: float


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Sessions:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def open(self, role: Role, subject: str) -> tuple[str, Session]:
        """A new session: the id for the cookie (shown nowhere else), and what the store keeps."""
        now = self.clock()
        await self.db.execute("DELETE FROM gw_ui_sessions WHERE expires_at <= $1", now)
        session_id = secrets.token_urlsafe(32)
        session = Session(session_hash=digest(session_id), role=role, subject=subject,
                          csrf=secrets.token_urlsafe(32), created_at=now, expires_at=now + SESSION_SECONDS)
        await self.db.execute(
            "INSERT INTO gw_ui_sessions (session_hash, role, subject, csrf, created_at, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)", session.session_hash, session.role, session.subject, session.csrf,
            session.created_at, session.expires_at)
        return session_id, session

    async def find(self, session_id: str) -> Session | None:
        """The session this id opened, while it has not expired or been closed."""
        if not session_id or len(session_id) > 100:
            return None
        row = await self.db.fetchrow("SELECT * FROM gw_ui_sessions WHERE session_hash = $1 AND expires_at > $2",
                                     digest(session_id), self.clock())
        return msgspec.convert(row, Session) if row else None

    async def close(self, session_hash: str) -> None:
        await self.db.execute("DELETE FROM gw_ui_sessions WHERE session_hash = $1", session_hash)
