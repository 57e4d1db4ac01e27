"""Alembic's entry point: run the migrations on the connection Podium hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from podium.control.db import MIGRATION_LOCK
from podium.control.schema import metadata

connection: Connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.run_migrations()
