"""What the podcast feeds need of each space: its replay file's size and duration, and
whether its host lets it into the feeds.

Revision 0004. The size and duration are written once the replay file exists (NULL
before, and for spaces from before this revision until a node that holds their replay
reads it again); every space is in the feeds unless its host keeps it out.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN, on SQLite too: a batch would copy the table, which the
    # foreign keys of the tables that name it refuse.
    op.add_column(
        "spaces", sa.Column("in_feed", sa.Boolean, nullable=False, server_default=sa.true())
    )
    op.add_column("spaces", sa.Column("replay_bytes", sa.BigInteger, nullable=True))
    op.add_column("spaces", sa.Column("replay_seconds", sa.Double, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spaces") as spaces:
        spaces.drop_column("replay_seconds")
        spaces.drop_column("replay_bytes")
        spaces.drop_column("in_feed")
