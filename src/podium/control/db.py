"""The embedded SQLite database: opening it, and its schema with numbered migrations.

One connection in WAL mode, used from the event-loop thread; statements are short and
indexed, so they never hold the loop for long. ``PRAGMA user_version`` records how many
migrations have run.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from podium.errors import StorageError

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (
        id            TEXT PRIMARY KEY,
        handle        TEXT NOT NULL UNIQUE,
        display_name  TEXT NOT NULL,
        password_hash TEXT,
        is_admin      INTEGER NOT NULL DEFAULT 0,
        created_at    REAL NOT NULL
    );
    CREATE TABLE api_tokens (
        id           TEXT PRIMARY KEY,
        user_id      TEXT NOT NULL REFERENCES users(id),
        name         TEXT NOT NULL,
        secret_hash  BLOB NOT NULL,
        created_at   REAL NOT NULL,
        last_used_at REAL,
        revoked_at   REAL
    );
    CREATE INDEX api_tokens_user ON api_tokens(user_id);
    CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        user_id     TEXT NOT NULL REFERENCES users(id),
        secret_hash BLOB NOT NULL,
        csrf_token  TEXT NOT NULL,
        created_at  REAL NOT NULL,
        expires_at  REAL NOT NULL
    );
    CREATE TABLE spaces (
        id              TEXT PRIMARY KEY,
        host_id         TEXT NOT NULL REFERENCES users(id),
        title           TEXT NOT NULL,
        description     TEXT NOT NULL,
        status          TEXT NOT NULL,
        scheduled_start REAL,
        created_at      REAL NOT NULL,
        started_at      REAL,
        ended_at        REAL
    );
    CREATE INDEX spaces_status ON spaces(status, created_at);
    """,
    """
    CREATE TABLE stages (
        space_id TEXT PRIMARY KEY REFERENCES spaces(id),
        document TEXT NOT NULL
    );
    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        space_id TEXT NOT NULL REFERENCES spaces(id),
        at       REAL NOT NULL,
        actor    TEXT NOT NULL,
        action   TEXT NOT NULL,
        target   TEXT NOT NULL,
        detail   TEXT NOT NULL
    );
    CREATE INDEX audit_space ON audit(space_id, id);
    CREATE TABLE audience (
        space_id TEXT PRIMARY KEY REFERENCES spaces(id),
        document TEXT NOT NULL
    );
    """,
)


def _private(path: Path) -> None:
    """The database holds password and token hashes: readable by its owner only. SQLite
    gives its -wal and -shm files the database file's mode."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        # Files an earlier version made with the umask's mode.
        if file.exists() and stat.S_IMODE(file.stat().st_mode) & 0o077:
            file.chmod(0o600)


class Database:
    """A SQLite connection with the schema brought up to date.

    Raises :class:`StorageError` if the file cannot be opened or migrated.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            _private(path)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open database {path}: {exc}") from exc

    def _migrate(self) -> None:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run statements atomically; SQLite errors become :class:`StorageError`."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise StorageError(f"database error: {exc}") from exc

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"database error: {exc}") from exc

    def check(self) -> None:
        """Raise :class:`StorageError` unless the database answers a query."""
        self.query("SELECT 1")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
