"""The control plane's tables, one definition for SQLite (embedded) and PostgreSQL (fleet).

These describe the schema at the newest migration (:mod:`podium.control.migrations`);
queries are built from them with SQLAlchemy Core, so one statement runs on both databases.
Times are seconds since the epoch as floating point; ids are random text.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    true,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("handle", Text, nullable=False, unique=True),
    Column("display_name", Text, nullable=False),
    Column("password_hash", Text),
    Column("is_admin", Integer, nullable=False, server_default="0"),
    Column("created_at", Double, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, ForeignKey("users.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_used_at", Double),
    Column("revoked_at", Double),
    Index("api_tokens_user", "user_id"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, ForeignKey("users.id"), nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
)

spaces = Table(
    "spaces",
    metadata,
    Column("id", Text, primary_key=True),
    Column("host_id", Text, ForeignKey("users.id"), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("scheduled_start", Double),
    Column("created_at", Double, nullable=False),
    Column("started_at", Double),
    Column("ended_at", Double),
    # The node whose media worker runs the room (a fleet); NULL: whichever node is alone.
    Column("media_node", Text),
    # Whether the space is an item of the podcast feeds (its host may keep it out).
    Column("in_feed", Boolean, nullable=False, server_default=true()),
    # The replay file's size and duration, once it is written (the feeds' enclosures).
    Column("replay_bytes", BigInteger),
    Column("replay_seconds", Double),
    Index("spaces_status", "status", "created_at"),
)

stages = Table(
    "stages",
    metadata,
    Column("space_id", Text, ForeignKey("spaces.id"), primary_key=True),
    Column("document", Text, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("space_id", Text, ForeignKey("spaces.id"), nullable=False),
    Column("at", Double, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Index("audit_space", "space_id", "id"),
    sqlite_autoincrement=True,
)

audience = Table(
    "audience",
    metadata,
    Column("space_id", Text, ForeignKey("spaces.id"), primary_key=True),
    Column("document", Text, nullable=False),
)
