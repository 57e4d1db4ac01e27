"""Accounts, passwords, API tokens and browser sessions.

People who host or speak have accounts; listening needs none. Passwords are hashed with
Argon2id. API tokens (for scripts and bots) and browser sessions are bearer credentials
(:mod:`podium.control.credentials`); each session also carries a CSRF token that every
cookie-authenticated write must echo in a header.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update

from podium.control.credentials import Credential, hash_secret, new_id
from podium.control.db import Database, IntegrityError, Record
from podium.control.schema import api_tokens, sessions, users
from podium.errors import Conflict, InvalidInput, NotFound, Unauthenticated

HANDLE_PATTERN = re.compile(r"^[a-z0-9_]{2,30}$")
PASSWORD_MIN = 10
PASSWORD_MAX = 256
TOKEN_PREFIX = "pdm"  # noqa: S105 (a prefix, not a secret)
SESSION_PREFIX = "pds"

_hasher = PasswordHasher()
# Verifying against this when the handle does not exist makes a failed sign-in take as
# long for an unknown handle as for a wrong password, so timing does not reveal handles.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class User:
    id: str
    handle: str
    display_name: str
    is_admin: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    name: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    session_id: str
    csrf_token: str
    expires_at: float


def validate_handle(handle: str) -> str:
    if not HANDLE_PATTERN.match(handle):
        raise InvalidInput(
            "a handle is 2 to 30 characters: lower-case letters, digits and underscores"
        )
    return handle


def validate_password(password: str) -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(f"a password is {PASSWORD_MIN} to {PASSWORD_MAX} characters long")
    return password


def hash_password(password: str) -> str:
    """Argon2id hash of ``password``. CPU-heavy by design: call it off the event loop."""
    return _hasher.hash(validate_password(password))


def _user(row: Record) -> User:
    fields = row._mapping
    return User(
        id=fields["id"],
        handle=fields["handle"],
        display_name=fields["display_name"],
        is_admin=bool(fields["is_admin"]),
        created_at=fields["created_at"],
    )


class Accounts:
    """Users and their credentials, stored in the control plane's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- users -------------------------------------------------------------------------

    def create_user(
        self,
        handle: str,
        display_name: str,
        password_hash: str | None,
        now: float,
        *,
        is_admin: bool = False,
    ) -> User:
        """Add a user. ``password_hash`` comes from :func:`hash_password` (or ``None``
        for an account that signs in with API tokens only). Raises :class:`Conflict`
        if the handle is taken."""
        validate_handle(handle)
        display_name = display_name.strip() or handle
        user = User(new_id(), handle, display_name, is_admin, now)
        try:
            with self._db.transaction() as conn:
                conn.execute(
                    insert(users).values(
                        id=user.id,
                        handle=handle,
                        display_name=display_name,
                        password_hash=password_hash,
                        is_admin=int(is_admin),
                        created_at=now,
                    )
                )
        except IntegrityError as exc:
            raise Conflict(f"the handle {handle!r} is taken") from exc
        return user

    def get_user(self, user_id: str) -> User:
        rows = self._db.query(select(users).where(users.c.id == user_id))
        if not rows:
            raise NotFound("no such user")
        return _user(rows[0])

    def find_by_handle(self, handle: str) -> User | None:
        rows = self._db.query(select(users).where(users.c.handle == handle))
        return _user(rows[0]) if rows else None

    def count_users(self) -> int:
        return int(self._db.query(select(func.count()).select_from(users))[0][0])

    def check_password(self, handle: str, password: str) -> User:
        """Return the user if ``password`` is right; else raise :class:`Unauthenticated`.

        CPU-heavy (Argon2): call it off the event loop. The same message is given for an
        unknown handle and a wrong password.
        """
        rows = self._db.query(select(users).where(users.c.handle == handle))
        stored = rows[0].password_hash if rows else None
        try:
            _hasher.verify(stored or _DUMMY_HASH, password)
            ok = stored is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            raise Unauthenticated("wrong handle or password")
        return _user(rows[0])

    # -- API tokens --------------------------------------------------------------------

    def issue_token(self, user_id: str, name: str, now: float) -> tuple[TokenInfo, str]:
        """Create an API token; return its description and the plaintext, shown once."""
        credential = Credential.new(TOKEN_PREFIX)
        with self._db.transaction() as conn:
            conn.execute(
                insert(api_tokens).values(
                    id=credential.id,
                    user_id=user_id,
                    name=name,
                    secret_hash=hash_secret(credential.secret),
                    created_at=now,
                )
            )
        return TokenInfo(credential.id, name, now, None, None), credential.render()

    def list_tokens(self, user_id: str) -> list[TokenInfo]:
        t = api_tokens.c
        rows = self._db.query(
            select(t.id, t.name, t.created_at, t.last_used_at, t.revoked_at)
            .where(t.user_id == user_id)
            .order_by(t.created_at)
        )
        return [TokenInfo(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def revoke_token(self, user_id: str, token_id: str, now: float) -> None:
        """Revoke one of the user's own tokens. Another user's token is "not found"."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.user_id == user_id)
                .values(revoked_at=func.coalesce(api_tokens.c.revoked_at, now))
            )
            if cursor.rowcount == 0:
                raise NotFound("no such token")

    def authenticate_token(self, text: str, now: float) -> User:
        """Return the owner of a valid, unrevoked API token, else raise."""
        credential = Credential.parse(text, TOKEN_PREFIX)
        if credential is None:
            raise Unauthenticated("malformed API token")
        rows = self._db.query(
            select(api_tokens.c.secret_hash, api_tokens.c.revoked_at, users)
            .join(users, users.c.id == api_tokens.c.user_id)
            .where(api_tokens.c.id == credential.id)
        )
        if not rows or not credential.matches(rows[0].secret_hash):
            raise Unauthenticated("invalid API token")
        if rows[0].revoked_at is not None:
            raise Unauthenticated("this API token has been revoked")
        with self._db.transaction() as conn:
            conn.execute(
                update(api_tokens).where(api_tokens.c.id == credential.id).values(last_used_at=now)
            )
        return _user(rows[0])

    # -- browser sessions --------------------------------------------------------------

    def create_session(self, user: User, now: float, ttl_s: float) -> tuple[Session, str]:
        """Start a browser session; return it and the cookie value, shown once."""
        credential = Credential.new(SESSION_PREFIX)
        session = Session(user, credential.id, secrets.token_urlsafe(24), now + ttl_s)
        with self._db.transaction() as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at < now))
            conn.execute(
                insert(sessions).values(
                    id=credential.id,
                    user_id=user.id,
                    secret_hash=hash_secret(credential.secret),
                    csrf_token=session.csrf_token,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return session, credential.render()

    def authenticate_session(self, cookie: str, now: float) -> Session:
        credential = Credential.parse(cookie, SESSION_PREFIX)
        if credential is None:
            raise Unauthenticated("malformed session cookie")
        s = sessions.c
        rows = self._db.query(
            select(s.secret_hash, s.csrf_token, s.expires_at, users)
            .join(users, users.c.id == s.user_id)
            .where(s.id == credential.id)
        )
        if not rows or not credential.matches(rows[0].secret_hash):
            raise Unauthenticated("your session is not valid; sign in again")
        if rows[0].expires_at <= now:
            raise Unauthenticated("your session has expired; sign in again")
        row = rows[0]
        return Session(_user(row), credential.id, row.csrf_token, row.expires_at)

    def end_session(self, session_id: str) -> None:
        with self._db.transaction() as conn:
            conn.execute(delete(sessions).where(sessions.c.id == session_id))
