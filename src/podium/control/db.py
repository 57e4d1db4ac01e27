"""The control plane's database: SQLite on one machine, PostgreSQL for a fleet.

One data-access layer for both, on SQLAlchemy Core: the tables are
:mod:`podium.control.schema`, the versioned migrations :mod:`podium.control.migrations`
(Alembic). ``podium migrate`` upgrades a database; ``podium serve`` upgrades the embedded
SQLite file by itself (a newcomer never runs a migration) and refuses a PostgreSQL
database that is not at the schema it knows.

Statements are short and indexed and run on the calling thread. Errors are translated
here: a database that cannot be reached (PostgreSQL down, a network cut, SQLite locked
past its timeout) is :class:`DatabaseUnavailable`, answered 503 with ``Retry-After``;
after such a failure further calls fail at once for a moment instead of each waiting
out a connect timeout, so an outage does not stall the event loop that also serves
listening and joining.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Row, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.sql import Executable

from podium.control import migrations
from podium.errors import ConfigError, StorageError

SQLITE_FILE = "podium.sqlite3"
# How long a client is told to wait, and how long this node stops trying, after the
# database could not be reached.
UNAVAILABLE_RETRY_S = 5.0
FAIL_FAST_S = 1.0
# Two nodes upgrading one PostgreSQL at once take turns: the second finds the work done.
MIGRATION_LOCK = 0x706F6469756D  # "podium"
CONNECT_TIMEOUT_S = 3
# A row of any columns, as the statements here return them.
Record: TypeAlias = Row[*tuple[Any, ...]]
# Revisions that ``PRAGMA user_version`` numbered before migrations were Alembic's.
_LEGACY_REVISIONS = {1: "0001", 2: "0002"}

__all__ = [
    "SQLITE_FILE",
    "Database",
    "DatabaseUnavailable",
    "IntegrityError",
    "Record",
    "SchemaState",
]


class DatabaseUnavailable(StorageError):
    """The database cannot be reached now; worth trying again shortly."""

    retry_after = UNAVAILABLE_RETRY_S


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against the migrations this Podium has."""

    current: str | None  # None: an empty database
    head: str
    legacy: bool = False  # numbered by PRAGMA user_version, not yet by Alembic

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head and not self.legacy


def database_url(setting: str, data_dir: Path) -> str:
    """The SQLAlchemy URL for the ``database_url`` setting: empty means the embedded
    SQLite file in the data directory; ``postgresql://`` URLs use psycopg 3."""
    if not setting:
        return f"sqlite+pysqlite:///{data_dir / SQLITE_FILE}"
    try:
        url = make_url(setting)
    except ArgumentError as exc:
        raise ConfigError(f"database_url: not a database URL: {exc}") from exc
    if url.drivername in {"postgresql", "postgres", "postgresql+psycopg"}:
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if url.drivername in {"sqlite", "sqlite+pysqlite"} and url.database:
        return url.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)
    raise ConfigError(
        f"database_url: {url.drivername!r} is not supported; use postgresql://… or sqlite:///…"
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


def _sqlite_engine(url: str, path: Path) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Transactions are begun below, not by the driver, so that a write transaction
        # takes SQLite's write lock at its start (BEGIN IMMEDIATE): a read-then-write
        # such as a lifecycle step cannot interleave with another writer's.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("podium_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    _private(path)
    return engine


class Database:
    """The control plane's database at ``url`` (see :func:`database_url`).

    Opening does not change the schema: :meth:`upgrade` does, :meth:`require_current`
    refuses a schema this Podium does not run on. Raises :class:`StorageError` if the
    database cannot be opened.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        # How messages name it: the file, or the URL without its password.
        self.description = (
            str(parsed.database)
            if self.dialect == "sqlite"
            else parsed.render_as_string(hide_password=True)
        )
        self._lock = threading.Lock()
        self._down_until = 0.0
        try:
            if self.dialect == "sqlite":
                self.path: Path | None = Path(str(parsed.database))
                self._engine = _sqlite_engine(url, self.path)
            else:
                self.path = None
                self._engine = create_engine(
                    url,
                    pool_pre_ping=True,
                    pool_size=5,
                    max_overflow=10,
                    pool_timeout=CONNECT_TIMEOUT_S,
                    connect_args={
                        "connect_timeout": CONNECT_TIMEOUT_S,
                        "application_name": "podium",
                    },
                )
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"cannot open database {self.description}: {exc}") from exc

    # -- schema ------------------------------------------------------------------------

    def _alembic(self, connection: Connection) -> Config:
        config = Config()
        config.set_main_option("script_location", str(Path(migrations.__file__).parent))
        config.attributes["connection"] = connection
        return config

    def schema(self) -> SchemaState:
        """Where this database's schema stands; raises :class:`StorageError` for a schema
        this Podium does not know (made by a newer version, or not Podium's)."""
        with self._connect() as connection:
            return self._schema(connection)

    def _schema(self, connection: Connection) -> SchemaState:
        script = ScriptDirectory.from_config(self._alembic(connection))
        head = script.get_current_head()
        assert head is not None
        current = MigrationContext.configure(connection).get_current_revision()
        legacy = False
        if current is None:
            tables = set(inspect(connection).get_table_names())
            if self.dialect == "sqlite":
                (number,) = connection.exec_driver_sql("PRAGMA user_version").one()
                if number in _LEGACY_REVISIONS:
                    current, legacy = _LEGACY_REVISIONS[number], True
                elif number or tables:
                    raise StorageError(
                        f"the database {self.description} has a schema this Podium does not"
                        f" know (user_version {number}): it was made by a newer Podium, or"
                        " it is not Podium's"
                    )
            elif tables:
                raise StorageError(
                    f"the database {self.description} holds tables but no Podium schema"
                    f" revision ({', '.join(sorted(tables)[:5])}): give Podium a database"
                    " of its own"
                )
        if current is not None:
            try:
                script.get_revision(current)
            except CommandError as exc:
                raise StorageError(
                    f"the database {self.description} is at schema revision {current!r},"
                    f" which this Podium does not know (it knows up to {head!r}): it was"
                    " upgraded by a newer Podium; run that version or a newer one"
                ) from exc
        return SchemaState(current=current, head=head, legacy=legacy)

    def _take_turns(self, connection: Connection) -> None:
        """On PostgreSQL, wait for any other migrator (the lock ends with the transaction)."""
        if self.dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})

    def upgrade(self, target: str = "head") -> tuple[SchemaState, SchemaState]:
        """Bring the schema to the newest revision (or ``target``); return where it stood
        before and after.

        A database numbered by the old ``user_version`` scheme is adopted at its revision
        first. Two nodes upgrading one PostgreSQL at once take turns.
        """
        with self._connect(write=True) as connection:
            # Before reading where the schema stands: read while another migrator commits,
            # its tables could be seen without its revision.
            self._take_turns(connection)
            before = self._schema(connection)
            config = self._alembic(connection)
            try:
                if before.legacy:
                    assert before.current is not None
                    command.stamp(config, before.current)
                    connection.commit()
                command.upgrade(config, target)
                connection.commit()
            except SQLAlchemyError as exc:
                raise self._translate(exc) from exc
            return before, self._schema(connection)

    def require_current(self) -> SchemaState:
        """Raise :class:`StorageError`, saying what to do, unless the schema is the newest."""
        state = self.schema()
        if not state.up_to_date:
            shown = "empty" if state.current is None else f"at revision {state.current!r}"
            raise StorageError(
                f"the database {self.description} is {shown}; this Podium needs revision"
                f" {state.head!r}: run `podium migrate` with the same database_url first"
            )
        return state

    # -- statements --------------------------------------------------------------------

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[Connection]:
        if self.dialect != "sqlite" and time.monotonic() < self._down_until:
            raise DatabaseUnavailable(
                f"the database {self.description} is unreachable; try again shortly"
            )
        try:
            with self._engine.connect() as connection:
                if write:
                    connection.execution_options(podium_write=True)
                yield connection
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: SQLAlchemyError) -> StorageError:
        unreachable = isinstance(exc, OperationalError | InterfaceError | PoolTimeout) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        )
        if not unreachable:
            return StorageError(f"database error: {exc.__class__.__name__}: {_first_line(exc)}")
        if self.dialect != "sqlite":
            with self._lock:
                self._down_until = time.monotonic() + FAIL_FAST_S
        return DatabaseUnavailable(
            f"the database {self.description} is unreachable ({_first_line(exc)}); try"
            " again shortly"
        )

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Run statements atomically: all of them, or (if anything raises) none.

        :class:`IntegrityError` (a unique key taken) passes through for the caller to
        word; every other database error becomes :class:`StorageError`.
        """
        with self._connect(write=True) as connection, connection.begin():
            yield connection

    def query(self, statement: Executable) -> Sequence[Record]:
        """The rows of one read-only statement."""
        with self._connect() as connection:
            return connection.execute(statement).all()

    def check(self) -> None:
        """Raise :class:`StorageError` unless the database answers a query."""
        self.query(text("SELECT 1"))

    def close(self) -> None:
        self._engine.dispose()


def _first_line(exc: SQLAlchemyError) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return (str(cause).strip().splitlines() or [cause.__class__.__name__])[0]
