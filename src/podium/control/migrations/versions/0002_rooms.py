"""Rooms: each space's stage document, its moderation audit log, and its saved audience.

Revision 0002; what ``PRAGMA user_version = 2`` meant before migrations were Alembic's.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stages",
        sa.Column("space_id", sa.Text, sa.ForeignKey("spaces.id"), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("space_id", sa.Text, sa.ForeignKey("spaces.id"), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("audit_space", "audit", ["space_id", "id"])
    op.create_table(
        "audience",
        sa.Column("space_id", sa.Text, sa.ForeignKey("spaces.id"), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("audience", "audit", "stages"):
        op.drop_table(table)
